"""Inference plumbing shared by the enhancement methods (SGMSE+, StoRM).

A method (`polydiff.speech.method.SpeechMethod`) provides ``sample(Y, generator=..., **options)
-> X`` on batches of compressed complex spectrograms ``(B, F, T)`` (T a multiple of the
network's frame multiple). This module wraps it into waveform enhancement following SGMSE+'s
inference recipe (Richter et al., 2023, Sec. IV-C: normalise by max|y|, STFT, pad frames to a
multiple of 64, enhance, inverse STFT to the original length, undo the normalisation), for
arrays of any length (``enhance_audio``), single files (``enhance_audio_file``, streamed,
atomic), whole folders (``enhance_folder``) and either (``enhance_path``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polydiff.core.errors import InputError
from polydiff.core.io import check_creatable
from polydiff.speech.audio import (
    AUDIO_EXTENSIONS,
    SpecConfig,
    crop_frames,
    pad_frames,
    resample,
    to_audio,
    to_spec,
)
from polydiff.speech.chunking import enhance_chunked, enhance_file
from polydiff.speech.method import OPTION_NAMES, SpeechMethod

FILE_OPTIONS = ("chunk_seconds", "margin_seconds", "fade_seconds", "channels", "subtype", "on_clip")


def _param(method: SpeechMethod) -> torch.Tensor:
    return next(method.net.parameters())


def wave_fn(
    method: SpeechMethod, generator: torch.Generator, **options: Any
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A waveform enhancer ``(B, n) -> (B, n)`` (normalised mono chunks, as `enhance_chunked`
    passes them) built on ``method.sample`` with the setting ``options`` (checked here, once).
    The STFT runs in the network's dtype and device; the result comes back in the input's."""
    p, cfg = _param(method), method.spec
    method.options(**options)  # a bad option fails before any audio is read

    def fn(y: torch.Tensor) -> torch.Tensor:
        Y = to_spec(y.to(device=p.device, dtype=p.dtype), cfg)
        Y_pad, n_frames = pad_frames(Y, method.frame_multiple)
        X = crop_frames(method.sample(Y_pad, generator=generator, **options), n_frames)
        return to_audio(X, cfg, y.shape[-1]).to(device=y.device, dtype=y.dtype)

    return fn


def make_generator(seed: int, method: SpeechMethod) -> torch.Generator:
    """A torch.Generator on the network's device seeded with ``seed`` (reproducible sampling)."""
    return torch.Generator(device=_param(method).device).manual_seed(int(seed))


class _EvalMode:
    """``with _EvalMode(method):`` runs the network in eval mode and restores its mode after."""

    def __init__(self, method: SpeechMethod) -> None:
        self.net = method.net

    def __enter__(self) -> None:
        self.was_training = self.net.training
        self.net.eval()

    def __exit__(self, *exc: object) -> None:
        self.net.train(self.was_training)


@torch.no_grad()
def enhance_audio(
    method: SpeechMethod,
    audio: np.ndarray | torch.Tensor,
    sample_rate: int | None = None,
    *,
    seed: int = 0,
    chunk_seconds: float = 4.0,
    margin_seconds: float = 0.25,
    fade_seconds: float = 0.25,
    batch_size: int = 1,
    **options: Any,
) -> np.ndarray:
    """Enhance ``audio`` (T,) or (C, T) of any length; returns float32 at ``sample_rate``.

    ``sample_rate`` (default: the model's) is the rate of ``audio``; other rates are resampled
    to the model's and the result back, so output samples align with the input. Long inputs are
    processed in overlapping chunks (`polydiff.speech.chunking.enhance_chunked`, memory bounded
    by the chunk size); the whole signal is normalised by its global peak first. The noise of the
    samplers comes from one generator seeded with ``seed``: the same call gives the same output.
    ``options`` is the sampler setting (`SpeechMethod.options`). A silent input gives silence;
    NaN/inf in the input or the output and a bad option raise ValueError.
    """
    cfg: SpecConfig = method.spec
    x = np.asarray(audio.detach().cpu() if isinstance(audio, torch.Tensor) else audio)
    if x.ndim not in (1, 2) or x.shape[-1] == 0:
        raise ValueError(f"enhance: expected (T,) or (C, T) audio, got shape {x.shape}")
    sr = cfg.sample_rate if sample_rate is None else int(sample_rate)
    if sr <= 0:
        raise ValueError(f"enhance: sample_rate must be positive, got {sample_rate}")
    length = x.shape[-1]
    x = resample(x.astype(np.float32), sr, cfg.sample_rate) if sr != cfg.sample_rate else x
    if x.shape[-1] <= cfg.n_fft // 2:
        raise ValueError(
            f"enhance: audio of {length} samples is too short (need > {cfg.n_fft // 2} samples "
            f"at {cfg.sample_rate} Hz)"
        )
    with _EvalMode(method):
        fn = wave_fn(method, make_generator(seed, method), **options)
        y = enhance_chunked(
            fn,
            torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
            cfg,
            chunk_seconds=chunk_seconds,
            margin_seconds=margin_seconds,
            fade_seconds=fade_seconds,
            batch_size=batch_size,
        ).numpy()
    if sr != cfg.sample_rate:
        y = resample(y, cfg.sample_rate, sr)
        y = (
            y[..., :length]
            if y.shape[-1] >= length
            else np.pad(y, [(0, 0)] * (y.ndim - 1) + [(0, length - y.shape[-1])])
        )
    return y.astype(np.float32)


def _audio_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
    )


def as_method(method: SpeechMethod | str | os.PathLike) -> SpeechMethod:
    """``method`` itself, or the method saved in that folder (`polydiff.speech.load_model`)."""
    if isinstance(method, SpeechMethod):
        return method
    from polydiff.speech.methods import load_model

    return load_model(method)


@torch.no_grad()
def enhance_audio_file(
    method: SpeechMethod | str | os.PathLike,
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    seed: int = 0,
    overwrite: bool = False,
    **kwargs: Any,
) -> str:
    """Enhance the audio file ``src`` into ``dst``: "written", "replaced" (it existed, and
    ``overwrite``) or "exists" (kept). Streamed chunk by chunk
    (`polydiff.speech.chunking.enhance_file`: memory flat in file length, output at the input
    file's rate, written atomically, so an interrupted run leaves no partial file); the sampler
    noise is seeded with ``seed`` alone. ``kwargs``: the file options (chunk_seconds,
    margin_seconds, fade_seconds, channels, subtype) and the sampler setting
    (`SpeechMethod.options`). ``method``: a method or a saved one's folder. A bad file raises
    InputError naming it."""
    method, src, dst = as_method(method), Path(src), Path(dst)
    existed = dst.exists()
    if existed and not overwrite:
        return "exists"
    if dst.resolve() == src.resolve():
        raise InputError(f"{dst}: the output must differ from the input")
    check_creatable(dst, str(dst))
    file_kwargs = {k: kwargs.pop(k) for k in FILE_OPTIONS if k in kwargs}
    with _EvalMode(method):
        fn = wave_fn(method, make_generator(seed, method), **kwargs)
        enhance_file(fn, src, dst, method.spec, **file_kwargs)
    return "replaced" if existed else "written"


@torch.no_grad()
def enhance_folder(
    method: SpeechMethod | str | os.PathLike,
    in_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    on_error: str = "raise",
    progress: Callable[[int, int, Path], None] | None = None,
    **kwargs: Any,
) -> dict[str, str]:
    """Enhance every .wav/.flac below ``in_dir`` into the same relative path below ``out_dir``
    (`enhance_audio_file` per file, with the same ``kwargs``: seed, overwrite, file options and
    the sampler setting).

    Each file's sampler noise is seeded with ``seed`` alone, so a file's result does not depend
    on which other files are in the folder. Existing outputs are kept unless ``overwrite``
    (re-running resumes an interrupted batch). A bad file (unreadable, empty, silent, NaN, or an
    enhancer producing NaN: nothing is written for it) raises ValueError naming it with
    ``on_error="raise"``, or is reported and skipped with ``"skip"``.

    Returns {relative path: "written" | "exists" | "error: <message>"}.
    """
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    if not in_dir.is_dir():
        raise FileNotFoundError(f"enhance_folder: input folder not found: {in_dir}")
    if on_error not in ("raise", "skip"):
        raise InputError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if out_dir.resolve() == in_dir.resolve():
        raise InputError(f"{out_dir}: the output folder must differ from the input folder")
    check_creatable(out_dir / "x", str(out_dir))
    files = _audio_files(in_dir)
    if not files:
        raise InputError(f"{in_dir}: no .wav/.flac files in this folder")
    method = as_method(method)
    method.options(**{k: v for k, v in kwargs.items() if k in OPTION_NAMES})
    status: dict[str, str] = {}
    for k, src in enumerate(files):
        rel = src.relative_to(in_dir)
        if progress is not None:
            progress(k, len(files), src)
        try:
            status[str(rel)] = enhance_audio_file(method, src, out_dir / rel, **kwargs)
        except ValueError as err:
            msg = str(err) if str(src) in str(err) else f"{src}: {err}"
            if on_error == "raise":
                raise (InputError if isinstance(err, InputError) else ValueError)(msg) from err
            status[str(rel)] = f"error: {msg}"
    return status


def enhance_path(
    method: SpeechMethod | str | os.PathLike,
    src: str | os.PathLike,
    dst: str | os.PathLike,
    **kwargs: Any,
) -> dict[str, str]:
    """Enhance a file (`enhance_audio_file`) or a folder (`enhance_folder`; ``on_error`` and
    ``progress`` apply) into ``dst``; {relative path or file name: status}. A single file's
    existing output is refused (InputError) unless ``overwrite``; a folder's are kept, which
    resumes an interrupted batch."""
    src, dst = Path(src), Path(dst)
    if src.is_dir():
        return enhance_folder(method, src, dst, **kwargs)
    if src.suffix.lower() not in AUDIO_EXTENSIONS:
        raise InputError(f"{src}: not a {'/'.join(AUDIO_EXTENSIONS)} file")
    if dst.exists() and not kwargs.get("overwrite", False):
        raise InputError(f"{dst}: exists already; give overwrite=true to replace it")
    kwargs = {k: v for k, v in kwargs.items() if k not in ("on_error", "progress")}
    return {src.name: enhance_audio_file(method, src, dst, **kwargs)}


__all__ = [
    "as_method",
    "enhance_audio",
    "enhance_audio_file",
    "enhance_folder",
    "enhance_path",
    "make_generator",
    "wave_fn",
]
