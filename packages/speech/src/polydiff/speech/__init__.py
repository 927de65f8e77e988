"""polydiff.speech: diffusion-based speech enhancement (SGMSE+, StoRM); see docs/speech.md.

Modules: `audio` (compressed complex STFT, resampling, WAV/FLAC I/O), `metrics` (PESQ, ESTOI,
SI-SDR/SIR/SAR with confidence intervals), `data` (paired-corpus reader, noise synthesis, the
built-in espeak-ng corpus, reverberation), `chunking` (long-file overlap-add), `nets` (NCSN++),
`sgmse` (SGMSE+), `storm` (StoRM), `enhance` (waveform / folder enhancement), `train` (training,
export and `load_model` through polydiff.core.train; imported on demand since it loads Lightning).
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
from polydiff.speech.enhance import enhance_audio, enhance_folder
from polydiff.speech.sgmse import SGMSE, SGMSEConfig
from polydiff.speech.storm import StoRM, StoRMConfig

__all__ = [
    "PRESETS",
    "SGMSE",
    "SGMSEConfig",
    "SpecConfig",
    "StoRM",
    "StoRMConfig",
    "enhance_audio",
    "enhance_chunked",
    "enhance_file",
    "enhance_folder",
    "load_audio",
    "overlap_add_apply",
    "preset",
    "save_audio",
    "to_audio",
    "to_spec",
]
