"""Ready-made hooks for :func:`polydiff.core.sample`.

x0 hooks: ``hook(x0_hat, x_t, t) -> x0_hat``; x_t hooks: ``hook(x_t, t, noise) -> x_t``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from polydiff.core.utils import expand_like


def clamp(lo: float = -1.0, hi: float = 1.0) -> Callable:
    """Static thresholding of the data prediction to [lo, hi]."""

    def hook(x0: Tensor, x: Tensor, t: Tensor) -> Tensor:
        return x0.clamp(lo, hi)

    return hook


def dynamic_threshold(percentile: float = 0.995) -> Callable:
    """Dynamic thresholding (Saharia et al. 2022, "Imagen", Sec. 2.3): s = max(1, the given
    percentile of |x0| per sample); x0 <- clamp(x0, -s, s) / s."""
    if not 0 < percentile <= 1:
        raise ValueError(f"percentile must be in (0, 1], got {percentile}")

    def hook(x0: Tensor, x: Tensor, t: Tensor) -> Tensor:
        flat = x0.abs().reshape(x0.shape[0], -1).float()
        s = torch.quantile(flat, percentile, dim=1).clamp_min(1.0).to(x0.dtype)
        s = expand_like(s, x0)
        return torch.maximum(torch.minimum(x0, s), -s) / s

    return hook


def inpaint(mask: Tensor, known: Tensor, path, mu: Tensor | None = None) -> Callable:
    """Replacement inpainting (Song et al. 2021, "Score-Based Generative Modeling through SDEs"; the
    "replacement" of RePaint without
    resampling): after each step, entries where ``mask`` is True are set to a fresh sample of
    q(x_t | known). Exact only when known and unknown entries are independent."""
    mask = mask.bool()

    def hook(x: Tensor, t: Tensor, noise) -> Tensor:
        x_known = path.marginal(known.to(x.dtype), t, noise(x), mu=mu)
        return torch.where(mask, x_known, x)

    return hook


__all__ = ["clamp", "dynamic_threshold", "inpaint"]
