"""polydiff.speech: diffusion-based speech enhancement (SGMSE+, StoRM); see docs/speech.md.

Modules: `audio` (compressed complex STFT, resampling, WAV/FLAC I/O), `metrics` (PESQ, ESTOI,
SI-SDR/SIR/SAR with confidence intervals), `data` (paired-corpus reader, noise synthesis, the
built-in espeak-ng corpus, reverberation), `chunking` (long-file overlap-add), `nets` (NCSN++),
`method` (the speech base of the core's `Method`, its uniform enhance options), `sgmse`
(SGMSE+), `storm` (StoRM), `methods` (the registry: `build_method`, `load_model`), `enhance`
(waveform / file / folder enhancement), `evaluation` (held-out sets, side-by-side scoring,
folder evaluation), `train` (training through polydiff.core.train; imported on demand since it
loads Lightning).
"""

from polydiff.speech.audio import (
    PRESETS,
    SpecConfig,
    load_audio,
    preset,
    save_audio,
    to_audio,
    to_spec,
)
from polydiff.speech.chunking import enhance_chunked, enhance_file, overlap_add_apply
from polydiff.speech.enhance import enhance_audio, enhance_audio_file, enhance_folder, enhance_path
from polydiff.speech.method import EnhanceOptions, SpeechMethod
from polydiff.speech.methods import build_method, load_model, speech_methods
from polydiff.speech.sgmse import SGMSE, SGMSEConfig
from polydiff.speech.storm import StoRM, StoRMConfig

__all__ = [
    "PRESETS",
    "SGMSE",
    "EnhanceOptions",
    "SGMSEConfig",
    "SpecConfig",
    "SpeechMethod",
    "StoRM",
    "StoRMConfig",
    "build_method",
    "enhance_audio",
    "enhance_audio_file",
    "enhance_chunked",
    "enhance_file",
    "enhance_folder",
    "enhance_path",
    "load_audio",
    "load_model",
    "overlap_add_apply",
    "preset",
    "save_audio",
    "speech_methods",
    "to_audio",
    "to_spec",
]
