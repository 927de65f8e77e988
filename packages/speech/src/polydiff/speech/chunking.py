"""Chunked processing of long signals: overlapping chunks, context margins, cross-faded overlap-add.

SGMSE/StoRM enhance a whole file at once, which runs out of memory on long recordings (sgmse#55).
Here a signal is cut into chunks of `chunk` samples whose first and last `margin` samples are
context only (discarded, except at the signal's true ends); neighbouring chunks' kept regions
overlap by at least `fade` samples and are cross-faded with complementary sin^2/cos^2 ramps, which
sum to one. Hence, for any operator whose output at a sample depends only on input within
`margin` samples of it (identity, pointwise maps, and STFT-domain per-frame operators when
margin >= n_fft and chunk starts are multiples of the hop), the chunked result equals whole-signal
processing up to float rounding. Memory is the output buffer plus `batch_size` chunks.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from polydiff.core.errors import InputError
from polydiff.speech.audio import CLIP_LEVEL, PRESETS, SpecConfig, open_audio


@dataclass(frozen=True)
class Chunk:
    start: int  # first input sample of the chunk
    stop: int  # one past its last input sample
    keep_start: int  # kept (output) region [keep_start, keep_stop), absolute positions
    keep_stop: int


def plan_chunks(length: int, chunk: int, margin: int, fade: int, align: int = 1) -> list[Chunk]:
    """Chunks covering [0, length); starts are multiples of `align` (e.g. the STFT hop)."""
    if min(length, chunk, align) < 1 or margin < 0 or fade < 1:
        raise ValueError(
            f"plan_chunks: need length, chunk, align, fade >= 1 and margin >= 0, got "
            f"length={length} chunk={chunk} margin={margin} fade={fade} align={align}"
        )
    if length <= chunk:
        return [Chunk(0, length, 0, length)]
    step = (chunk - 2 * margin - fade) // align * align
    if step < 1:
        raise ValueError(
            f"chunk {chunk} too short for 2 x margin {margin} + fade {fade} (+ align {align})"
        )
    chunks, start = [], 0
    while True:
        stop = min(start + chunk, length)
        last = stop == length
        keep_start = start + margin if start > 0 else 0
        chunks.append(Chunk(start, stop, keep_start, stop if last else stop - margin))
        if last:
            return chunks
        start += step


def _ramp(n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """sin^2 ramp from ~0 to ~1 over n samples; 1 - ramp is its complementary fade-out."""
    return torch.sin(0.5 * math.pi * (torch.arange(n, dtype=dtype, device=device) + 0.5) / n) ** 2


def chunk_weights(chunks: list[Chunk], i: int, dtype=torch.float64, device=None) -> torch.Tensor:
    """Cross-fade weights of chunk i over its input span [start, stop); zero outside the kept
    region. Summed over all chunks the weights are one at every sample."""
    c = chunks[i]
    w = torch.zeros(c.stop - c.start, dtype=dtype, device=device)
    w[c.keep_start - c.start : c.keep_stop - c.start] = 1.0
    if i > 0:  # fade in over the overlap with the previous kept region
        n = chunks[i - 1].keep_stop - c.keep_start
        a = c.keep_start - c.start
        w[a : a + n] = _ramp(n, dtype, device)
    if i + 1 < len(chunks):  # fade out over the overlap with the next kept region
        n = c.keep_stop - chunks[i + 1].keep_start
        b = c.keep_stop - c.start
        w[b - n : b] = 1.0 - _ramp(n, dtype, device)
    return w


def overlap_add_apply(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    chunk: int,
    margin: int,
    fade: int,
    align: int = 1,
    batch_size: int = 1,
) -> torch.Tensor:
    """Apply `fn` chunk by chunk along the last axis of x and overlap-add the results.

    x is (R, ..., T) (a 1-D signal is treated as R = 1). `fn` gets up to `batch_size` chunks of
    equal length n concatenated along the first axis, (k R, ..., n), and must return that shape:
    a waveform (C, T) gives (k C, n) batches; a spectrogram (C, F, N) chunked over frames gives
    (k C, F, n).
    """
    squeeze = x.ndim == 1
    xb = x[None] if squeeze else x
    rows, length = xb.shape[0], xb.shape[-1]
    chunks = plan_chunks(length, chunk, margin, fade, align)
    out = torch.zeros_like(xb)
    i = 0
    while i < len(chunks):
        size = chunks[i].stop - chunks[i].start
        group = [i]
        while (
            len(group) < batch_size
            and group[-1] + 1 < len(chunks)
            and chunks[group[-1] + 1].stop - chunks[group[-1] + 1].start == size
        ):
            group.append(group[-1] + 1)
        batch = torch.cat([xb[..., chunks[j].start : chunks[j].stop] for j in group])
        y = fn(batch)
        if y.shape != batch.shape:
            raise ValueError(f"fn returned shape {tuple(y.shape)} for input {tuple(batch.shape)}")
        for k, j in enumerate(group):
            w = chunk_weights(chunks, j, dtype=out.real.dtype, device=out.device)
            out[..., chunks[j].start : chunks[j].stop] += w * y[k * rows : (k + 1) * rows]
        i = group[-1] + 1
    return out[0] if squeeze else out


def enhance_chunked(
    fn: Callable[[torch.Tensor], torch.Tensor],
    audio: np.ndarray | torch.Tensor,
    cfg: SpecConfig = PRESETS["16k"],
    chunk_seconds: float = 4.0,
    margin_seconds: float = 0.25,
    fade_seconds: float = 0.25,
    batch_size: int = 1,
    normalize: bool = True,
) -> torch.Tensor:
    """Enhance audio (T,) or (C, T) of any length with `fn` in overlapping chunks.

    `fn` maps a batch of normalised mono waveforms (B, n) to enhanced waveforms (B, n); channels
    are enhanced independently. With `normalize`, the whole signal is divided by its global
    max|y| first (as SGMSE+ normalises a file, Richter et al., 2023, Sec. IV-C) and the result is
    multiplied back, so every chunk sees the same scale as whole-file processing would; a silent
    input is returned as silence. Chunk starts are multiples of `cfg.hop_length` so STFT frames
    line up with the whole file's. Raises ValueError if `fn` produces NaN/inf.
    """
    x = torch.as_tensor(audio)
    if x.ndim not in (1, 2) or x.shape[-1] == 0:
        raise ValueError(f"enhance_chunked: expected (T,) or (C, T) audio, got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("enhance_chunked: input audio contains NaN or infinite samples")
    sr, hop = cfg.sample_rate, cfg.hop_length
    chunk = max(round(chunk_seconds * sr / hop), 1) * hop
    margin = math.ceil(margin_seconds * sr)
    fade = max(math.ceil(fade_seconds * sr), 1)
    scale = x.abs().amax() if normalize else torch.ones((), dtype=x.dtype, device=x.device)
    if normalize and scale == 0:
        return torch.zeros_like(x)
    y = overlap_add_apply(fn, x / scale, chunk, margin, fade, hop, batch_size) * scale
    if not torch.isfinite(y).all():
        raise ValueError("enhance_chunked: the enhancer produced NaN or infinite samples")
    return y


class _ResampledReader:
    """Random access to a sound file as if it had been read whole and resampled to `rate`.

    A block [a, b) of the resampled signal is computed from the input samples it depends on plus
    the polyphase filter's half-length (scipy's resample_poly uses 10 * max(up, down) taps on
    each side at the upsampled rate); the segment starts at a multiple of `down`, so its output
    grid coincides with the whole-file one and the block equals whole-file resampling exactly.
    """

    def __init__(self, f, rate: int, channels: str) -> None:
        self.f, self.channels = f, channels
        g = math.gcd(f.samplerate, rate)
        self.up, self.down = rate // g, f.samplerate // g
        self.n_in = f.frames
        self.length = -(-self.n_in * self.up // self.down)  # ceil, as resample_poly
        self.context = 10 * max(self.up, self.down) // self.up + 2

    def read(self, a: int, b: int) -> np.ndarray:
        """Samples [a, b) at the target rate, (C, b - a) float64 (C = 1 unless channels="all")."""
        from scipy.signal import resample_poly

        s0 = max(a * self.down // self.up - self.context, 0) // self.down * self.down
        s1 = min(-(-b * self.down // self.up) + self.context + 1, self.n_in)
        self.f.seek(s0)
        x = self.f.read(s1 - s0, dtype="float64", always_2d=True).T
        if self.channels == "mix":
            x = x.mean(axis=0, keepdims=True)
        elif self.channels == "first":
            x = x[:1]
        if self.up != 1 or self.down != 1:
            x = resample_poly(x, self.up, self.down, axis=-1)
        offset = s0 * self.up // self.down
        return x[:, a - offset : b - offset]


def _warn_if_clipped(f, path: Path, clip_warn: float = 1e-3) -> None:
    """Warn (as `load_audio` does) when more than `clip_warn` of the file's samples sit at or
    above full scale: a clipped recording is enhanced anyway, but the user should know."""
    over = 0
    for block in f.blocks(blocksize=1 << 16, dtype="float32", always_2d=True):
        over += int(np.count_nonzero(np.abs(block) >= CLIP_LEVEL))
    f.seek(0)
    frac = over / (f.frames * f.channels)
    if frac > clip_warn:
        warnings.warn(
            f"{path}: {100 * frac:.2f}% of samples are at full scale (clipped?)", stacklevel=3
        )


def enhance_file(
    fn: Callable[[torch.Tensor], torch.Tensor],
    in_path: str | os.PathLike,
    out_path: str | os.PathLike,
    cfg: SpecConfig = PRESETS["16k"],
    chunk_seconds: float = 4.0,
    margin_seconds: float = 0.25,
    fade_seconds: float = 0.25,
    channels: str = "mix",
    subtype: str = "PCM_16",
    on_clip: str = "clip",
    out_rate: int | None = None,
) -> Path:
    """Stream `in_path` through `fn` chunk by chunk into `out_path`, with memory flat in length.

    `fn` works at the model's rate `cfg.sample_rate`; the output is written at `out_rate` (None:
    the input file's rate, so a user's 48 kHz file comes back at 48 kHz). When `out_rate` is
    above the model's rate a warning says that the output has no content above the model's
    Nyquist frequency. At the model's rate the result equals
    `enhance_chunked(fn, load_audio(in_path, cfg.sample_rate, channels))` (exactly up to float
    rounding); at another rate it is that signal resampled (polyphase, as `load_audio`).

    Only one chunk of input and output is held in memory: a first pass finds the global peak
    for the normalisation, a second reads, resamples, enhances and writes each chunk (a sample is
    written as soon as no later chunk overlaps it); a third, when `out_rate` differs, resamples
    the model-rate result block by block. The output appears atomically when complete. Raises
    FileNotFoundError / ValueError (naming the file) for a missing, unreadable, empty or silent
    input (a clipped one is enhanced with a warning), and ValueError if `fn` produces NaN/inf
    (nothing is written then). An integer `subtype` cannot hold |x| > 1 and a stream cannot be
    rescaled after the fact, so such samples are hard-clipped with a warning giving their number
    (`on_clip="clip"`) or raise ValueError (`on_clip="error"`); use `subtype="FLOAT"` to keep them.
    """
    import soundfile as sf

    from polydiff.core.io import atomic_path

    in_path, out_path = Path(in_path), Path(out_path)
    if on_clip not in ("clip", "error"):
        raise InputError(f"on_clip must be 'clip' or 'error', got {on_clip!r}")
    if channels not in ("mix", "first", "all"):
        raise InputError(f"channels must be 'mix', 'first' or 'all', got {channels!r}")
    if out_rate is not None and out_rate <= 0:
        raise InputError(f"out_rate must be > 0 Hz, got {out_rate}")
    fmt = "FLAC" if out_path.suffix.lower() == ".flac" else "WAV"
    if subtype is not None and not sf.check_format(fmt, subtype):
        known = ", ".join(sorted(sf.available_subtypes(fmt)))
        raise InputError(f"subtype={subtype!r}: not a {fmt} subtype (choose one of {known})")
    with open_audio(in_path) as f:
        shortest = cfg.n_fft // 2 + 1  # the centred STFT reflect-pads n_fft // 2 samples
        if f.frames * cfg.sample_rate < shortest * f.samplerate:
            raise InputError(
                f"{in_path}: too short ({f.frames} samples at {f.samplerate} Hz; the model "
                f"needs at least {shortest} samples at its {cfg.sample_rate} Hz)"
            )
        _warn_if_clipped(f, in_path)
        out_rate = out_rate or f.samplerate
        n_ch = f.channels if channels == "all" else 1
        blocks = _enhanced_blocks(
            fn,
            _ResampledReader(f, cfg.sample_rate, channels),
            in_path,
            cfg,
            chunk_seconds,
            margin_seconds,
            fade_seconds,
        )
        with atomic_path(out_path) as tmp:
            if out_rate == cfg.sample_rate:
                clipped = _write_blocks(
                    tmp, out_path, blocks, cfg.sample_rate, n_ch, subtype, on_clip, fmt
                )
            else:
                model_rate = tmp.with_name(tmp.name + ".model-rate.wav")
                try:  # enhanced at the model's rate in float, then resampled to out_rate
                    _write_blocks(
                        model_rate, out_path, blocks, cfg.sample_rate, n_ch, "FLOAT", on_clip
                    )
                    with sf.SoundFile(str(model_rate)) as g:
                        resampled = _resampled_blocks(_ResampledReader(g, out_rate, "all"))
                        clipped = _write_blocks(
                            tmp, out_path, resampled, out_rate, n_ch, subtype, on_clip, fmt
                        )
                finally:
                    model_rate.unlink(missing_ok=True)
    if out_rate > cfg.sample_rate:
        warnings.warn(band_note(out_rate, cfg.sample_rate, out_path), stacklevel=2)
    if clipped:
        warnings.warn(f"{out_path}: {clipped} samples above full scale were clipped", stacklevel=2)
    return out_path


def band_note(out_rate: int, model_rate: int, out_path: str | os.PathLike) -> str:
    """The notice for a file written above the model's rate: its top band is empty."""
    return (
        f"{out_path}: written at the input's {out_rate} Hz, but the model works at {model_rate} "
        f"Hz, so the output has no content above {model_rate // 2} Hz"
    )


def _enhanced_blocks(fn, reader, in_path, cfg, chunk_seconds, margin_seconds, fade_seconds):
    """Check the input (pass 1: its global peak) and return a generator of the enhanced
    signal at the model's rate, (C, n) float64 blocks in order (pass 2)."""
    hop = cfg.hop_length
    chunk = max(round(chunk_seconds * cfg.sample_rate / hop), 1) * hop
    margin = math.ceil(margin_seconds * cfg.sample_rate)
    fade = max(math.ceil(fade_seconds * cfg.sample_rate), 1)
    chunks = plan_chunks(reader.length, chunk, margin, fade, hop)
    scale = 0.0
    for c in chunks:
        block = reader.read(c.start, c.stop)
        if not np.isfinite(block).all():
            raise InputError(f"{in_path}: audio contains NaN or infinite samples")
        scale = max(scale, float(np.abs(block).max()))
    if scale == 0.0:
        raise InputError(f"{in_path}: audio is digital silence (all samples are zero)")
    return _overlap_add_stream(fn, reader, chunks, scale, in_path)


def _overlap_add_stream(fn, reader, chunks, scale, in_path):
    pending, done = None, 0  # accumulated output from sample `done` onwards
    for i, c in enumerate(chunks):
        x = torch.from_numpy(reader.read(c.start, c.stop) / scale)
        y = fn(x)
        if y.shape != x.shape:
            raise ValueError(f"fn returned shape {tuple(y.shape)} for {tuple(x.shape)}")
        y = (chunk_weights(chunks, i) * y.double()).cpu().numpy() * scale
        if not np.isfinite(y).all():
            raise ValueError(f"{in_path}: the enhancer produced NaN or infinite samples")
        if pending is None:
            pending = np.zeros((y.shape[0], 0))
        grow = c.stop - done - pending.shape[1]
        if grow > 0:
            pending = np.concatenate([pending, np.zeros((y.shape[0], grow))], axis=1)
        pending[:, c.start - done : c.stop - done] += y
        final = chunks[i + 1].start if i + 1 < len(chunks) else reader.length
        ready, pending = pending[:, : final - done], pending[:, final - done :]
        done = final
        yield ready


def _resampled_blocks(reader, block: int = 1 << 16):
    """Yield a `_ResampledReader`'s whole signal in blocks of `block` samples."""
    for a in range(0, reader.length, block):
        yield reader.read(a, min(a + block, reader.length))


def _write_blocks(tmp, out_path, blocks, rate, n_ch, subtype, on_clip, fmt="WAV") -> int:
    """Write (C, n) blocks to the sound file `tmp` in format `fmt`; returns the number of
    samples clipped to full scale (integer subtypes only; errors name `out_path`)."""
    import soundfile as sf

    integer = not subtype.startswith(("FLOAT", "DOUBLE"))
    clipped = 0
    with sf.SoundFile(str(tmp), "w", rate, n_ch, subtype, format=fmt) as out:
        for ready in blocks:
            over = int(np.sum(np.abs(ready) > 1.0)) if integer else 0
            if over and on_clip == "error":
                raise ValueError(f"{out_path}: enhanced audio exceeds full scale")
            clipped += over
            out.write(np.clip(ready, -1.0, 1.0).T if over else ready.T)
    return clipped
