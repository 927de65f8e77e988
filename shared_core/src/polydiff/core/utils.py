"""Small tensor helpers shared by paths, parameterizations and solvers."""

from __future__ import annotations

import torch
from torch import Tensor

from polydiff.core.errors import InputError


def append_dims(c: Tensor, ndim: int) -> Tensor:
    """``c`` with singleton dims appended up to ``ndim`` dims, its dtype kept: a per-sample [B]
    or per-position [B, L] value (time, mask, FiLM parameters) lined up with leading dims."""
    return c.reshape(*c.shape, *([1] * (ndim - c.ndim)))


def expand_like(c: Tensor, x: Tensor) -> Tensor:
    """Cast a time coefficient to ``x``'s dtype and append singleton dims so it broadcasts.

    ``c`` is 0-dim (time shared by the batch), ``[B]`` (per sample) or ``[B, L]`` (per position);
    trailing dims are added so that its leading dims line up with ``x``'s.
    """
    return append_dims(c.to(dtype=x.dtype), x.ndim)


def resolve_device(device: str | torch.device, option: str = "device") -> torch.device:
    """``device`` as a torch.device that this machine has, else one InputError naming
    ``option`` (an unknown name, or CUDA / MPS that is not available here)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise InputError(f"{option}={device!r} is not a torch device ({err})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"{option}={device!r}: CUDA is not available on this machine (use cpu)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise InputError(f"{option}={device!r}: this machine has {torch.cuda.device_count()} GPUs")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"{option}={device!r}: MPS is not available on this machine (use cpu)")
    return dev


__all__ = ["append_dims", "expand_like", "resolve_device"]
