"""Checks of the arrays a user hands to a model (shapes per sample, finite values)."""

from __future__ import annotations

import torch
from torch import Tensor

from polydiff.core.errors import InputError


def batch_of(name: str, value, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """``value`` as a [B, *shape] tensor of ``dtype``; else an InputError naming ``name``."""
    value = torch.as_tensor(value)
    if value.ndim == 0 or tuple(value.shape[1:]) != tuple(shape):
        raise InputError(
            f"{name}: expected shape [B, {', '.join(map(str, shape))}] for this model, "
            f"got {tuple(value.shape)}"
        )
    if not torch.isfinite(value).all():
        raise InputError(f"{name}: contains NaN or infinite values")
    return value.to(dtype)
