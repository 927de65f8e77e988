"""Embeddings of a diffusion time or noise level, per sample ``[B]`` or per position ``[B, L]``."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn


def sinusoidal_embedding(
    t: Tensor, dim: int, max_period: float = 10_000.0, scale: float = 1.0
) -> Tensor:
    """``[cos(s t w_i), sin(s t w_i)]`` with ``w_i = max_period^(-i / (dim/2))``, float32.

    The Transformer position encoding (Vaswani et al., 2017, "Attention Is All You Need",
    Sec. 3.5) applied to a time, as DDPM does (Ho et al., 2020, App. B); ``scale`` maps t to the
    range the frequencies expect (DDPM feeds the step index, i.e. ``scale=1000`` for t in [0, 1]).
    ``t`` has any shape; the result has one more dimension of size ``dim`` (even).
    """
    if dim % 2:
        raise ValueError(f"sinusoidal_embedding: dim={dim} must be even")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)
    t = t.float() if scale == 1.0 else scale * t.float()
    angles = t[..., None] * freqs
    return torch.cat((angles.cos(), angles.sin()), dim=-1)


class GaussianFourierProjection(nn.Module):
    """``[sin(2 pi W s), cos(2 pi W s)]`` with fixed ``W ~ N(0, scale^2)`` of ``size`` entries.

    Random Fourier features (Tancik et al., 2020, "Fourier Features Let Networks Learn High
    Frequency Functions in Low Dimensional Domains"), the noise-level embedding of NCSN++ (Song
    et al., 2021, "Score-Based Generative Modeling through SDEs", App. H). ``W`` is a frozen
    parameter so that it is saved with the weights; ``s`` has any shape, the result one more
    dimension of size ``2 * size``.
    """

    def __init__(self, size: int, scale: float = 16.0) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.randn(size) * scale, requires_grad=False)

    def forward(self, s: Tensor) -> Tensor:
        proj = 2 * math.pi * s[..., None] * self.W
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)


class TimeMLP(nn.Sequential):
    """Linear, SiLU, Linear: the embedding MLP of DDPM (Ho et al., 2020, App. B) that turns the
    fixed features of a time into the vector the blocks are conditioned on.

    ``linear`` builds each layer (e.g. one with a custom initialisation). The layers are items
    0 and 2, so state-dict keys read ``<name>.0.weight`` and ``<name>.2.weight``.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int,
        out_dim: int | None = None,
        linear: Callable[[int, int], nn.Module] = nn.Linear,
    ) -> None:
        super().__init__(
            linear(in_dim, hidden_dim), nn.SiLU(), linear(hidden_dim, out_dim or hidden_dim)
        )


__all__ = ["GaussianFourierProjection", "TimeMLP", "sinusoidal_embedding"]
