"""Audio front end: complex STFT with amplitude compression, padding, resampling, WAV/FLAC I/O.

The representation is the one of SGMSE+ (Richter, Welker, Lemercier, Lay, Gerkmann, 2023, "Speech
Enhancement and Dereverberation with Diffusion-based Generative Models", IEEE/ACM TASLP, Sec. IV-A,
Eq. (19)): a centred STFT with a periodic Hann window followed by the amplitude compression
c(X) = beta |X|^alpha e^{j angle X}, which is exactly invertible.

Channel policy (the networks are single-channel): `load_audio(..., channels="mix")` (default)
averages all channels to mono; `"first"` keeps channel 0; `"all"` keeps every channel as a
`(C, T)` array, which callers enhance as C independent mono signals (a batch) and write back as a
C-channel file.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf
import torch

from polydiff.core.errors import InputError
from polydiff.core.io import atomic_path

Channels = Literal["mix", "first", "all"]


@dataclass(frozen=True)
class SpecConfig:
    """STFT + compression settings of SGMSE+ (Richter et al., 2023, Sec. IV-A).

    sample_rate: rate the model works at; every input is resampled to it.
    n_fft: FFT size (510 gives 256 frequency bins at 16 kHz).
    hop_length: frame shift in samples.
    alpha: amplitude exponent of c(X) = beta |X|^alpha e^{j angle X}.
    beta: scale of the compressed spectrogram.
    frame_multiple: frames are padded to a multiple of this (the U-Net downsamples 2^k times).
    """

    sample_rate: int = 16000
    n_fft: int = 510
    hop_length: int = 128
    alpha: float = 0.5
    beta: float = 0.15
    frame_multiple: int = 64

    def __post_init__(self) -> None:
        if self.sample_rate <= 0 or self.n_fft <= 0 or self.hop_length <= 0:
            raise ValueError(f"SpecConfig: sample_rate, n_fft and hop_length must be > 0: {self}")
        if not 0 < self.hop_length <= self.n_fft:
            raise ValueError(f"SpecConfig: need 0 < hop_length <= n_fft, got {self}")
        if self.alpha <= 0 or self.beta <= 0:
            raise ValueError(f"SpecConfig: alpha and beta must be > 0, got {self}")
        if self.frame_multiple < 1:
            raise ValueError(f"SpecConfig: frame_multiple must be >= 1, got {self}")

    @property
    def n_freqs(self) -> int:
        return self.n_fft // 2 + 1

    def to_dict(self) -> dict:
        return asdict(self)


# 16 kHz: SGMSE+ defaults (beta 0.15; the first SGMSE paper and StoRM use beta 0.33).
# 48 kHz: the EARS / SGMSE 48k recipe (n_fft 1534, hop 384, alpha 0.667, beta 0.065).
PRESETS: dict[str, SpecConfig] = {
    "16k": SpecConfig(),
    "16k_storm": SpecConfig(beta=0.33),
    "48k": SpecConfig(sample_rate=48000, n_fft=1534, hop_length=384, alpha=0.667, beta=0.065),
}


def preset(name: str) -> SpecConfig:
    """A named SpecConfig from PRESETS ("16k", "16k_storm", "48k")."""
    if name not in PRESETS:
        raise ValueError(f"unknown spectrogram preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]


# ----------------------------------------------------------------------------- STFT


def _window(cfg: SpecConfig, like: torch.Tensor) -> torch.Tensor:
    dtype = like.real.dtype if like.is_complex() else like.dtype
    return torch.hann_window(cfg.n_fft, periodic=True, dtype=dtype, device=like.device)


def num_frames(length: int, cfg: SpecConfig) -> int:
    """Frames of a centred STFT of `length` samples: 1 + length // hop."""
    return 1 + length // cfg.hop_length


def stft(x: torch.Tensor, cfg: SpecConfig) -> torch.Tensor:
    """Complex STFT of real signals x (..., T) -> (..., F, frames), centred, periodic Hann."""
    if x.is_complex() or not x.is_floating_point():
        raise ValueError(f"stft: expected a real floating tensor, got dtype {x.dtype}")
    if x.shape[-1] <= cfg.n_fft // 2:
        # center=True reflect-pads n_fft // 2 samples on each side.
        raise ValueError(
            f"stft: signal of {x.shape[-1]} samples is too short for n_fft {cfg.n_fft}; "
            f"need more than {cfg.n_fft // 2} samples"
        )
    lead = x.shape[:-1]
    X = torch.stft(
        x.reshape(-1, x.shape[-1]),
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        window=_window(cfg, x),
        center=True,
        return_complex=True,
    )
    return X.reshape(*lead, *X.shape[-2:])


def istft(X: torch.Tensor, cfg: SpecConfig, length: int) -> torch.Tensor:
    """Inverse of `stft` (least-squares overlap-add), cropped/padded to `length` samples."""
    lead = X.shape[:-2]
    x = torch.istft(
        X.reshape(-1, *X.shape[-2:]),
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        window=_window(cfg, X),
        center=True,
        length=length,
    )
    return x.reshape(*lead, length)


def compress(X: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
    """c(X) = beta |X|^alpha e^{j angle X} (Richter et al., 2023, Eq. (19))."""
    return torch.polar(beta * X.abs() ** alpha, X.angle())


def decompress(S: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
    """c^{-1}(S) = (|S| / beta)^{1/alpha} e^{j angle S}, the exact inverse of `compress`."""
    return torch.polar((S.abs() / beta) ** (1.0 / alpha), S.angle())


def to_spec(x: torch.Tensor, cfg: SpecConfig) -> torch.Tensor:
    """Waveform (..., T) -> compressed complex spectrogram (..., F, frames)."""
    return compress(stft(x, cfg), cfg.alpha, cfg.beta)


def to_audio(S: torch.Tensor, cfg: SpecConfig, length: int) -> torch.Tensor:
    """Compressed complex spectrogram (..., F, frames) -> waveform (..., length)."""
    return istft(decompress(S, cfg.alpha, cfg.beta), cfg, length)


def pad_frames(S: torch.Tensor, multiple: int = 64) -> tuple[torch.Tensor, int]:
    """Zero-pad the last (frame) axis to a multiple of `multiple`; returns (padded, n_frames).

    The U-Net halves the time axis several times, so its input length must be divisible by
    2^depth (SGMSE pads to 64 frames). Padding is appended at the end so `crop_frames` undoes it.
    """
    n = S.shape[-1]
    pad = (-n) % multiple
    if pad:
        S = torch.nn.functional.pad(S, (0, pad))
    return S, n


def crop_frames(S: torch.Tensor, n_frames: int) -> torch.Tensor:
    """Undo `pad_frames`: keep the first `n_frames` frames."""
    return S[..., :n_frames]


# ----------------------------------------------------------------------------- resampling


def resample(x: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Polyphase resampling along the last axis (scipy.signal.resample_poly, Kaiser window)."""
    if orig_sr <= 0 or target_sr <= 0:
        raise ValueError(f"resample: sample rates must be > 0, got {orig_sr} -> {target_sr}")
    if orig_sr == target_sr:
        return x
    from scipy.signal import resample_poly  # deferred: scipy.signal is slow to import

    g = math.gcd(int(orig_sr), int(target_sr))
    y = resample_poly(x, target_sr // g, orig_sr // g, axis=-1)
    return y.astype(x.dtype, copy=False)


# ----------------------------------------------------------------------------- file I/O

AUDIO_EXTENSIONS = (".wav", ".flac")
CLIP_LEVEL = 0.999  # |x| at or above this counts as full scale


def clipped_fraction(x: np.ndarray, level: float = CLIP_LEVEL) -> float:
    """Fraction of samples at full scale (|x| >= level), a cheap clipping detector.

    Float files may exceed 1 without being clipped; then only samples at their peak count.
    """
    if x.size == 0:
        return 0.0
    mag = np.abs(x)
    return float(np.mean(mag >= max(level, level * float(mag.max()))))


# libsndfile's parse log of a WAV whose data chunk is shorter than its header says
_SHORT_DATA = re.compile(r"^data\s*:\s*(\d+) \(should be (\d+)\)", re.MULTILINE)
_STREAMING_SIZES = (0, 0xFFFFFFFF)  # sizes a streaming writer leaves in a header: not damage


class _AudioFile(sf.SoundFile):
    """A SoundFile whose decoding failures name the file: a FLAC damaged or cut mid-stream opens
    fine and fails only when the damaged frames are read (or sought)."""

    def _refuse(self, err: sf.LibsndfileError):
        reason = getattr(err, "error_string", None) or str(err)
        return InputError(
            f"{self.name}: damaged audio data, decoding failed ({reason.strip()}); "
            "export or copy the file again"
        )

    def read(self, *args, **kwargs):
        try:
            return super().read(*args, **kwargs)
        except sf.LibsndfileError as err:
            raise self._refuse(err) from err

    def seek(self, *args, **kwargs):
        try:
            return super().seek(*args, **kwargs)
        except sf.LibsndfileError as err:
            raise self._refuse(err) from err


def open_audio(path: str | os.PathLike):
    """Open a WAV/FLAC file for reading (a `soundfile.SoundFile`), refusing what cannot be read as
    audio with an InputError that names the file: a folder, FIFO or device, a file libsndfile does
    not recognise (e.g. text renamed .wav), an empty or header-only file, a WAV cut short (its
    header declares more samples than it holds). FileNotFoundError for a missing file. Frames
    damaged mid-stream (a FLAC that lost sync) raise InputError naming the file when read."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"audio file not found: {path}")
    if not path.is_file():  # opening a FIFO would wait for a writer
        raise InputError(f"{path}: not a regular file (a folder, FIFO or device)")
    if path.stat().st_size == 0:  # libsndfile would only say "Format not recognised"
        raise InputError(f"{path}: empty file (0 bytes); copy or export it again")
    try:
        f = _AudioFile(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        reason = getattr(err, "error_string", None) or str(err)
        raise InputError(f"{path}: not a readable audio file ({reason})") from err
    short = _SHORT_DATA.search(f.extra_info)
    problem = None
    if f.frames == 0:
        problem = "empty audio file (0 samples)"
    elif short and int(short[1]) not in _STREAMING_SIZES and int(short[1]) > int(short[2]):
        problem = (f"truncated: its header declares {short[1]} bytes of samples but the file "
                   f"holds {short[2]}; copy or export it again")  # fmt: skip
    if problem:
        f.close()
        raise InputError(f"{path}: {problem}")
    return f


def load_audio(
    path: str | os.PathLike,
    sample_rate: int | None = None,
    channels: Channels = "mix",
    allow_silence: bool = False,
    clip_warn: float = 1e-3,
) -> tuple[np.ndarray, int]:
    """Read a WAV/FLAC file as float32, resampled to `sample_rate` (None keeps the file's rate).

    Returns (audio, rate): audio is (T,) for channels "mix" (mean of the channels) or "first",
    and (C, T) for "all". Raises FileNotFoundError for a missing file and InputError (a
    ValueError) for what `open_audio` refuses and for a non-finite or (unless `allow_silence`)
    all-zero file. Warns when more than
    `clip_warn` of the samples sit at full scale (a clipped recording).
    """
    path = Path(path)
    with open_audio(path) as f:
        data, sr = f.read(dtype="float32", always_2d=True), f.samplerate
    if not np.isfinite(data).all():
        raise InputError(f"{path}: audio contains NaN or infinite samples")
    if not allow_silence and not np.any(data):
        raise InputError(f"{path}: audio is digital silence (all samples are zero)")
    frac = clipped_fraction(data)
    if frac > clip_warn:
        warnings.warn(
            f"{path}: {100 * frac:.2f}% of samples are at full scale (clipped?)", stacklevel=2
        )
    if channels == "mix":
        audio = data.mean(axis=1)
    elif channels == "first":
        audio = data[:, 0]
    elif channels == "all":
        audio = data.T
    else:
        raise ValueError(f"load_audio: channels must be 'mix', 'first' or 'all', got {channels!r}")
    if sample_rate is not None:
        audio = resample(np.ascontiguousarray(audio), sr, sample_rate)
        sr = sample_rate
    return np.ascontiguousarray(audio, dtype=np.float32), int(sr)


def save_audio(
    path: str | os.PathLike,
    audio: np.ndarray | torch.Tensor,
    sample_rate: int,
    subtype: str | None = None,
    on_clip: Literal["scale", "clip", "error"] = "scale",
) -> Path:
    """Write (T,) or (C, T) audio to WAV/FLAC atomically (temp file in the same folder + replace).

    NaN/inf samples always raise ValueError: nothing non-finite is ever written. Integer subtypes
    (PCM_16, the default; FLAC is always integer) cannot hold |x| > 1: `on_clip="scale"`
    (default) rescales the signal to peak 0.999 with a warning, `"clip"` hard-clips, `"error"`
    raises.
    """
    path = Path(path)
    if path.suffix.lower() not in AUDIO_EXTENSIONS:
        raise ValueError(f"{path}: unsupported audio extension; use one of {AUDIO_EXTENSIONS}")
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().cpu().numpy()
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim not in (1, 2) or audio.shape[-1] == 0:
        raise ValueError(f"{path}: expected (T,) or (C, T) audio with T > 0, got {audio.shape}")
    if not np.isfinite(audio).all():
        raise ValueError(f"{path}: refusing to write audio with NaN or infinite samples")
    fmt = "FLAC" if path.suffix.lower() == ".flac" else "WAV"
    subtype = subtype or "PCM_16"
    peak = float(np.max(np.abs(audio)))
    if not subtype.startswith(("FLOAT", "DOUBLE")) and peak > 1.0:
        if on_clip == "error":
            raise ValueError(f"{path}: peak {peak:.3f} > 1 cannot be stored as {subtype}")
        if on_clip == "scale":
            warnings.warn(
                f"{path}: peak {peak:.3f} > 1, rescaled to 0.999 to avoid clipping", stacklevel=2
            )
            audio = audio * (CLIP_LEVEL / peak)
        elif on_clip == "clip":
            audio = np.clip(audio, -1.0, 1.0)
        else:
            raise ValueError(f"save_audio: on_clip must be 'scale', 'clip' or 'error': {on_clip!r}")
    with atomic_path(path) as tmp:
        sf.write(tmp, audio.T if audio.ndim == 2 else audio, sample_rate, subtype, format=fmt)
    return path
