"""Intensity conventions: CT windowing and invertible normalisation to [0, 1]."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class IntensityScale:
    """The affine map ``x -> (x - low) / (high - low)`` and its inverse, to bring a
    reconstruction made in [0, 1] back to the input's units (e.g. Hounsfield)."""

    low: float
    high: float

    def __post_init__(self) -> None:
        if not self.high > self.low:
            raise ValueError(f"intensity window needs high > low, got [{self.low}, {self.high}]")

    def forward(self, x: Tensor, clip: bool = False) -> Tensor:
        y = (x - self.low) / (self.high - self.low)
        return y.clamp(0, 1) if clip else y

    def inverse(self, y: Tensor) -> Tensor:
        return y * (self.high - self.low) + self.low


def window(x: Tensor, center: float, width: float) -> Tensor:
    """Radiological window/level: clip to ``[center - width/2, center + width/2]`` and map to
    [0, 1] (e.g. CT soft tissue: center 40 HU, width 400 HU)."""
    if width <= 0:
        raise ValueError(f"window width must be > 0, got {width}")
    return IntensityScale(center - width / 2, center + width / 2).forward(x, clip=True)


def fit_scale(
    x: Tensor, method: str = "minmax", percentiles: tuple[float, float] = (0.5, 99.5)
) -> IntensityScale:
    """The scale that maps ``x`` to [0, 1]: ``minmax`` (exact range) or ``percentile`` (robust to
    outliers; values outside the percentiles map outside [0, 1] unless clipped)."""
    if method == "minmax":
        low, high = float(x.min()), float(x.max())
    elif method == "percentile":
        lo, hi = percentiles
        if not 0 <= lo < hi <= 100:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles}")
        q = torch.quantile(
            x.flatten().double()[:: max(1, x.numel() // 1_000_000)],
            torch.tensor([lo / 100, hi / 100], dtype=torch.float64),
        )
        low, high = float(q[0]), float(q[1])
    else:
        raise ValueError(f"method must be 'minmax' or 'percentile', got {method!r}")
    if high <= low:
        high = low + 1.0  # constant volume: any scale works; keep the map invertible
    return IntensityScale(low, high)


def normalize(
    x: Tensor, method: str = "minmax", clip: bool = False
) -> tuple[Tensor, IntensityScale]:
    """``x`` mapped to [0, 1] and the :class:`IntensityScale` that undoes it."""
    scale = fit_scale(x, method)
    return scale.forward(x, clip=clip), scale
