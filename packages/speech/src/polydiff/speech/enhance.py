"""Inference plumbing shared by the enhancement methods (SGMSE+, StoRM).

A method provides ``enhance_spec(Y, generator=...) -> X`` on batches of compressed complex
spectrograms ``(B, F, T)`` (T a multiple of the network's frame multiple). This module wraps it
into waveform enhancement following SGMSE+'s inference recipe (Richter et al., 2023, Sec. IV-C:
normalise by max|y|, STFT, pad frames to a multiple of 64, enhance, inverse STFT to the original
length, undo the normalisation), for arrays of any length (``enhance_chunked``), single files
and whole folders (``enhance_file``, streamed, atomic).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

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

SpecFn = Callable[..., torch.Tensor]  # enhance_spec(Y, generator=...) -> X


def _param(model: torch.nn.Module) -> torch.Tensor:
    return next(model.parameters())


def wave_fn(
    model: torch.nn.Module,
    cfg: SpecConfig,
    generator: torch.Generator,
    **sampler_kwargs,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A waveform enhancer ``(B, n) -> (B, n)`` (normalised mono chunks, as `enhance_chunked`
    passes them) built on ``model.enhance_spec``. The STFT runs in the model's dtype and device;
    the result comes back in the input's dtype and device."""
    p = _param(model)

    def fn(y: torch.Tensor) -> torch.Tensor:
        Y = to_spec(y.to(device=p.device, dtype=p.dtype), cfg)
        Y_pad, n_frames = pad_frames(Y, model.frame_multiple)
        X = crop_frames(model.enhance_spec(Y_pad, generator=generator, **sampler_kwargs), n_frames)
        return to_audio(X, cfg, y.shape[-1]).to(device=y.device, dtype=y.dtype)

    return fn


def make_generator(seed: int, model: torch.nn.Module) -> torch.Generator:
    """A torch.Generator on the model's device seeded with ``seed`` (reproducible sampling)."""
    return torch.Generator(device=_param(model).device).manual_seed(int(seed))


@torch.no_grad()
def enhance_audio(
    model: torch.nn.Module,
    audio: np.ndarray | torch.Tensor,
    sample_rate: int | None = None,
    *,
    seed: int = 0,
    chunk_seconds: float = 4.0,
    margin_seconds: float = 0.25,
    fade_seconds: float = 0.25,
    batch_size: int = 1,
    **sampler_kwargs,
) -> np.ndarray:
    """Enhance ``audio`` (T,) or (C, T) of any length; returns float32 at ``sample_rate``.

    ``sample_rate`` (default: the model's) is the rate of ``audio``; other rates are resampled
    to the model's and the result back, so output samples align with the input. Long inputs are
    processed in overlapping chunks (`polydiff.speech.chunking.enhance_chunked`, memory bounded
    by the chunk size); the whole signal is normalised by its global peak first. The noise of the
    samplers comes from one generator seeded with ``seed``: the same call gives the same output.
    A silent input gives silence; NaN/inf in the input or the output raise ValueError.
    """
    cfg: SpecConfig = model.spec
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
    was_training = model.training
    model.eval()
    try:
        fn = wave_fn(model, cfg, make_generator(seed, model), **sampler_kwargs)
        y = enhance_chunked(
            fn,
            torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
            cfg,
            chunk_seconds=chunk_seconds,
            margin_seconds=margin_seconds,
            fade_seconds=fade_seconds,
            batch_size=batch_size,
        ).numpy()
    finally:
        model.train(was_training)
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


@torch.no_grad()
def enhance_folder(
    model: torch.nn.Module,
    in_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    seed: int = 0,
    overwrite: bool = False,
    on_error: str = "raise",
    chunk_seconds: float = 4.0,
    margin_seconds: float = 0.25,
    fade_seconds: float = 0.25,
    channels: str = "mix",
    subtype: str = "PCM_16",
    progress: Callable[[int, int, Path], None] | None = None,
    **sampler_kwargs,
) -> dict[str, str]:
    """Enhance every .wav/.flac below ``in_dir`` into the same relative path below ``out_dir``.

    Each file is streamed chunk by chunk (`polydiff.speech.chunking.enhance_file`: memory flat in
    file length, output at the model's sample rate, written atomically, so an interrupted run
    leaves only complete files). Each file's sampler noise is seeded with ``seed`` alone, so a
    file's result does not depend on which other files are in the folder. Existing outputs are
    kept unless ``overwrite`` (re-running resumes an interrupted batch). A bad file (unreadable,
    empty, silent, NaN, or an enhancer producing NaN: nothing is written for it) raises
    ValueError naming it with ``on_error="raise"``, or is reported and skipped with ``"skip"``.

    Returns {relative path: "written" | "exists" | "error: <message>"}.
    """
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    if not in_dir.is_dir():
        raise FileNotFoundError(f"enhance_folder: input folder not found: {in_dir}")
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if out_dir.resolve() == in_dir.resolve():
        raise ValueError(f"enhance_folder: out_dir must differ from in_dir ({in_dir})")
    files = _audio_files(in_dir)
    if not files:
        raise ValueError(f"enhance_folder: no .wav/.flac files in {in_dir}")
    status: dict[str, str] = {}
    was_training = model.training
    model.eval()
    try:
        for k, src in enumerate(files):
            rel = src.relative_to(in_dir)
            dst = out_dir / rel
            if progress is not None:
                progress(k, len(files), src)
            if dst.exists() and not overwrite:
                status[str(rel)] = "exists"
                continue
            fn = wave_fn(model, model.spec, make_generator(seed, model), **sampler_kwargs)
            try:
                enhance_file(
                    fn,
                    src,
                    dst,
                    model.spec,
                    chunk_seconds=chunk_seconds,
                    margin_seconds=margin_seconds,
                    fade_seconds=fade_seconds,
                    channels=channels,
                    subtype=subtype,
                )
            except ValueError as err:
                msg = str(err) if str(src) in str(err) else f"{src}: {err}"
                if on_error == "raise":
                    raise ValueError(msg) from err
                status[str(rel)] = f"error: {msg}"
                continue
            status[str(rel)] = "written"
    finally:
        model.train(was_training)
    return status


__all__ = ["enhance_audio", "enhance_folder", "make_generator", "wave_fn"]
