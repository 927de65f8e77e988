"""Transformer pieces over sequences ``[B, T, D]``: rotary multi-head attention with a KV cache,
and the pre-norm block with adaptive layer norm (adaLN-Zero) conditioning."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def rotary_cos_sin(
    positions: Tensor, head_dim: int, base: float = 10_000.0
) -> tuple[Tensor, Tensor]:
    """cos and sin of the rotary angles ``pos * base^(-2i/d)``, shape ``[..., T, head_dim/2]``
    (Su et al., 2021, "RoFormer: Enhanced Transformer with Rotary Position Embedding", Eq. 34)."""
    exponent = torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim
    angles = positions.to(torch.float32)[..., None] * base**-exponent
    return angles.cos(), angles.sin()


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate the pairs (x_i, x_{i+d/2}) of ``x [B, H, T, d]`` by the angles in cos/sin (the
    rotate-half form of RoFormer used by GPT-NeoX)."""
    x1, x2 = x.chunk(2, dim=-1)
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class Attention(nn.Module):
    """Multi-head self-attention (Vaswani et al., 2017, Sec. 3.2) of new tokens over cached
    ``past`` keys/values and themselves, with optional rotary positions (``cos``/``sin`` from
    :func:`rotary_cos_sin`). Bias-free ``qkv`` and ``out`` projections."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"Attention: n_heads={n_heads} does not divide d_model={d_model}")
        self.n_heads, self.head_dim = n_heads, d_model // n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)

    def forward(
        self,
        x: Tensor,
        cos: Tensor | None = None,
        sin: Tensor | None = None,
        attn_mask: Tensor | None = None,
        past: tuple[Tensor, Tensor] | None = None,
        is_causal: bool = False,
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """The output ``[B, T, D]`` and the keys/values ``[B, H, T_past + T, d]`` of past + new
        tokens (rotary applied). `attn_mask` is boolean (True = may attend),
        ``[T, T_past + T]``."""
        B, T, _ = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if cos is not None and sin is not None:
            q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if past is not None:
            k, v = torch.cat((past[0], k), dim=-2), torch.cat((past[1], v), dim=-2)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal)
        return self.out(y.transpose(1, 2).reshape(B, T, -1)), (k, v)


class TransformerBlock(nn.Module):
    """Pre-norm transformer block: ``x + attn(LN(x))`` then ``x + MLP(LN(x))`` (GELU MLP).

    With ``cond_dim`` the layer norms lose their affine parameters and a condition ``c``
    (``[B, cond_dim]`` per sample or ``[B, T, cond_dim]`` per token) sets a shift, scale and
    gate of each sublayer: adaLN-Zero (Peebles & Xie, 2023, "Scalable Diffusion Models with
    Transformers", Sec. 3.2). The modulation starts at zero, so the block starts as the
    identity. Keyword arguments of ``forward`` (rotary ``cos``/``sin``, ``attn_mask``,
    ``past``, ``is_causal``) go to :class:`Attention`; it returns ``(x [B, T, D], (keys,
    values))``.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        cond_dim: int | None = None,
    ) -> None:
        super().__init__()
        d, hidden = d_model, int(mlp_ratio * d_model)
        self.norm1 = nn.LayerNorm(d, elementwise_affine=cond_dim is None)
        self.attn = Attention(d, n_heads)
        self.norm2 = nn.LayerNorm(d, elementwise_affine=cond_dim is None)
        self.mlp = nn.Sequential(
            nn.Linear(d, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, d)
        )
        self.dropout = nn.Dropout(dropout)
        self.modulation = None
        if cond_dim is not None:
            self.modulation = nn.Linear(cond_dim, 6 * d)
            nn.init.zeros_(self.modulation.weight)  # adaLN-Zero: each block starts as identity
            nn.init.zeros_(self.modulation.bias)

    def forward(self, x: Tensor, c: Tensor | None = None, **attn_kwargs) -> tuple[Tensor, object]:
        if self.modulation is None:
            a, cache = self.attn(self.norm1(x), **attn_kwargs)
            x = x + self.dropout(a)
            return x + self.dropout(self.mlp(self.norm2(x))), cache
        if c is None:
            raise ValueError("this TransformerBlock is conditioned (adaLN-Zero): pass c")
        if c.dim() == 2:  # one condition per sample
            c = c[:, None]
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(F.silu(c)).chunk(6, -1)
        a, cache = self.attn(self.norm1(x) * (1 + scale1) + shift1, **attn_kwargs)
        x = x + gate1 * self.dropout(a)
        h = self.norm2(x) * (1 + scale2) + shift2
        return x + gate2 * self.dropout(self.mlp(h)), cache


__all__ = ["Attention", "TransformerBlock", "apply_rotary", "rotary_cos_sin"]
