"""Keep-probability schedules alpha(t) of discrete diffusion (t = 0 data, t = 1 prior).

alpha(t) is the probability that a token is still clean at time t; it decreases from 1 to
alpha(1) = eps. Every schedule gives alpha, its derivative and its inverse (the inverse is what
the first-hitting sampler needs to turn a sampled alpha back into a time).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["CosineSchedule", "DiscreteSchedule", "LogLinearSchedule", "get_discrete_schedule"]


class DiscreteSchedule:
    """Interface: alpha(t), dalpha(t) = d alpha / dt and t_of_alpha (inverse), elementwise."""

    eps: float

    def alpha(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def dalpha(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def t_of_alpha(self, alpha: Tensor) -> Tensor:
        raise NotImplementedError


class LogLinearSchedule(DiscreteSchedule):
    """alpha(t) = 1 - (1 - eps) t, the log-linear noise of Sahoo et al. (2024), "Simple and
    Effective Masked Diffusion Language Models" (MDLM), total noise sigma(t) = -log alpha(t).
    The NELBO weight alpha'/(1 - alpha) is exactly -1/t."""

    def __init__(self, eps: float = 1e-3) -> None:
        if not 0.0 <= eps < 1.0:
            raise ValueError(f"eps must be in [0, 1), got {eps}")
        self.eps = eps

    def alpha(self, t: Tensor) -> Tensor:
        return 1.0 - (1.0 - self.eps) * t

    def dalpha(self, t: Tensor) -> Tensor:
        return torch.full_like(t, -(1.0 - self.eps))

    def t_of_alpha(self, alpha: Tensor) -> Tensor:
        return (1.0 - alpha) / (1.0 - self.eps)


class CosineSchedule(DiscreteSchedule):
    """Two different "cosine" schedules exist in the reference code; both are offered by name.

    - ``variant="cos"`` (MDLM's CosineNoise): alpha(t) = eps + (1 - eps) cos(pi t / 2). Few tokens
      are revealed late in sampling (alpha is flat near t = 0).
    - ``variant="one_minus_sin"`` (MaskGIT, Chang et al. 2022: masking ratio cos(pi r / 2) at
      decoding progress r = 1 - t): alpha(t) = eps + (1 - eps)(1 - sin(pi t / 2)). Few tokens are
      revealed early (alpha is flat near t = 1).
    """

    def __init__(self, eps: float = 1e-3, variant: str = "cos") -> None:
        if variant not in ("cos", "one_minus_sin"):
            raise ValueError(f"variant must be 'cos' or 'one_minus_sin', got {variant!r}")
        if not 0.0 <= eps < 1.0:
            raise ValueError(f"eps must be in [0, 1), got {eps}")
        self.eps, self.variant = eps, variant

    def _shape(self, t: Tensor) -> Tensor:
        h = 0.5 * math.pi * t
        return torch.cos(h) if self.variant == "cos" else 1.0 - torch.sin(h)

    def alpha(self, t: Tensor) -> Tensor:
        return self.eps + (1.0 - self.eps) * self._shape(t)

    def dalpha(self, t: Tensor) -> Tensor:
        h = 0.5 * math.pi * t
        d = -torch.sin(h) if self.variant == "cos" else -torch.cos(h)
        return (1.0 - self.eps) * 0.5 * math.pi * d

    def t_of_alpha(self, alpha: Tensor) -> Tensor:
        r = ((alpha - self.eps) / (1.0 - self.eps)).clamp(0.0, 1.0)
        h = torch.acos(r) if self.variant == "cos" else torch.asin(1.0 - r)
        return h / (0.5 * math.pi)


def get_discrete_schedule(name: str, eps: float = 1e-3) -> DiscreteSchedule:
    """Schedule by name: 'loglinear', 'cosine' (MDLM cos) or 'cosine_maskgit' (1 - sin)."""
    if name == "loglinear":
        return LogLinearSchedule(eps)
    if name == "cosine":
        return CosineSchedule(eps, "cos")
    if name == "cosine_maskgit":
        return CosineSchedule(eps, "one_minus_sin")
    raise ValueError(f"unknown discrete schedule {name!r}: use loglinear, cosine, cosine_maskgit")
