"""Speech data: paired-corpus reader, noise synthesis and mixing, built-in corpus generators."""

from polydiff.speech.data.noise import NOISE_KINDS, fit_length, make_noise, mix_at_snr
from polydiff.speech.data.pairs import SUBSETS, Pair, PairedSpeech, crop_or_pad, list_pairs

__all__ = [
    "NOISE_KINDS",
    "SUBSETS",
    "Pair",
    "PairedSpeech",
    "crop_or_pad",
    "fit_length",
    "list_pairs",
    "make_noise",
    "mix_at_snr",
]
