"""Convolutional building blocks over 1, 2 or 3 position dimensions (channels first)."""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from polydiff.core.nn.film import FiLM

Norm = Literal["group", "layer"]
_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


def conv_nd(dims: int, *args, **kwargs) -> nn.Module:
    """``nn.Conv1d``, ``Conv2d`` or ``Conv3d`` for ``dims`` position dimensions."""
    if dims not in _CONV:
        raise ValueError(f"dims={dims}: expected 1, 2 or 3 position dimensions")
    return _CONV[dims](*args, **kwargs)


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of each position of ``[B, C, *positions]`` (Ba et al., 2016).

    Unlike GroupNorm it never mixes positions, so a block built with it keeps positions apart
    wherever its convolutions do (e.g. kernel size 1): what per-position noise levels need.
    """

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.movedim(1, -1)).movedim(-1, 1)


def norm_layer(kind: Norm, groups: int, channels: int, eps: float = 1e-5) -> nn.Module:
    """GroupNorm (Wu & He, 2018) with ``groups`` groups, or :class:`ChannelLayerNorm`."""
    if kind == "group":
        return nn.GroupNorm(groups, channels, eps=eps)
    if kind == "layer":
        return ChannelLayerNorm(channels, eps=eps)
    raise ValueError(f"norm={kind!r}: expected 'group' or 'layer'")


class ResBlock(nn.Module):
    """Residual block of DDPM (Ho et al., 2020, App. B) with the noise embedding as FiLM on the
    second normalisation (adaptive GroupNorm, Dhariwal & Nichol, 2021, Sec. 3):

    ``skip(x) + conv2(dropout(SiLU(FiLM(norm2(conv1(SiLU(norm1(x)))), emb))))``,

    ``skip`` a 1x1 convolution when the width changes. ``x`` is ``[B, c_in, *positions]`` with
    ``dims`` position dimensions; ``emb`` is ``[B, emb_dim]``, or ``[B, L, emb_dim]`` per
    position when ``dims == 1`` (the temporal blocks of Janner et al., 2022, and Chi et al.,
    2023, with per-position noise levels).
    """

    def __init__(
        self, c_in: int, c_out: int, emb_dim: int, groups: int = 8, dropout: float = 0.0, *,
        dims: int = 2, kernel_size: int = 3, norm: Norm = "group",
    ) -> None:  # fmt: skip
        super().__init__()
        pad = kernel_size // 2
        self.norm1 = norm_layer(norm, groups, c_in)
        self.conv1 = conv_nd(dims, c_in, c_out, kernel_size, padding=pad)
        self.film = FiLM(emb_dim, c_out)
        self.norm2 = norm_layer(norm, groups, c_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = conv_nd(dims, c_out, c_out, kernel_size, padding=pad)
        self.skip = conv_nd(dims, c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.film(self.norm2(h), emb)
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


def attend_positions(qkv: Tensor, heads: int) -> Tensor:
    """Multi-head scaled dot-product attention (Vaswani et al., 2017, Sec. 3.2) among the
    positions of a channels-first ``qkv`` ``[B, 3C, *positions]`` (queries, keys and values
    stacked on the channels, heads split within each). Returns ``[B, C, *positions]``."""
    b, c3, *positions = qkv.shape
    c = c3 // 3
    q, k, v = qkv.reshape(b, 3, heads, c // heads, -1).transpose(-1, -2).unbind(1)
    out = F.scaled_dot_product_attention(q, k, v)  # [B, heads, N, C / heads]
    return out.transpose(-1, -2).reshape(b, c, *positions)


class SelfAttention(nn.Module):
    """Self-attention over all positions of ``[B, C, *positions]`` with a residual connection:
    ``x + proj(attention(qkv(norm(x))))``, as in the U-Nets of DDPM (Ho et al., 2020, App. B,
    at 16x16) and Dhariwal & Nichol (2021). ``heads`` defaults to one per 32 channels."""

    def __init__(
        self, channels: int, groups: int = 8, heads: int | None = None, *, dims: int = 2
    ) -> None:
        super().__init__()
        self.heads = heads or max(1, channels // 32)
        if channels % self.heads:
            raise ValueError(f"SelfAttention: {self.heads} heads do not divide {channels} channels")
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = conv_nd(dims, channels, 3 * channels, 1)
        self.proj = conv_nd(dims, channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.proj(attend_positions(self.qkv(self.norm(x)), self.heads))


__all__ = [
    "ChannelLayerNorm",
    "ResBlock",
    "SelfAttention",
    "attend_positions",
    "conv_nd",
    "norm_layer",
]
