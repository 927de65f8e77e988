"""Feature-wise linear modulation by a conditioning vector."""

from __future__ import annotations

from torch import Tensor, nn

from polydiff.core.utils import append_dims


class FiLM(nn.Linear):
    """``h (1 + gamma(c)) + beta(c)`` with ``(gamma, beta)`` one linear map of ``c``.

    FiLM (Perez et al., 2018, "FiLM: Visual Reasoning with a General Conditioning Layer",
    Eq. 1-2), with the scale written as ``1 + gamma`` so that a zero map is the identity, as in
    the adaptive group normalisation of Dhariwal & Nichol (2021), "Diffusion Models Beat GANs on
    Image Synthesis", Sec. 3. ``h`` is channels-first ``[B, C, *positions]``; ``c`` is one vector
    per sample ``[B, cond_dim]`` or one per position of a sequence ``[B, L, cond_dim]``
    (then ``h`` is ``[B, C, L]``). It is a ``Linear`` itself, so its keys are ``weight``/``bias``.
    ``zero_init=True`` starts it as the identity (default: ``nn.Linear``'s initialisation).
    """

    def __init__(self, cond_dim: int, channels: int, zero_init: bool = False) -> None:
        super().__init__(cond_dim, 2 * channels)
        if zero_init:
            nn.init.zeros_(self.weight)
            nn.init.zeros_(self.bias)

    def forward(self, h: Tensor, c: Tensor) -> Tensor:  # type: ignore[override]
        params = super().forward(c)
        if params.dim() == 3:  # per position [B, L, 2C] -> [B, 2C, L]
            params = params.transpose(1, 2)
        # not utils.expand_like: that casts to h's dtype, which changes the rounding of
        # 1 + scale under autocast (bf16 params, fp32 normalised h)
        params = append_dims(params, h.dim())
        scale, shift = params.chunk(2, dim=1)
        return h * (1 + scale) + shift


__all__ = ["FiLM"]
