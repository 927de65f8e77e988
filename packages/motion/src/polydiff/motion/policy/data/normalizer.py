"""Per-feature affine normalizers: limits to [-1, 1] (diffusion policy) and Gaussian (z-score).

Both are ``y = x * scale + offset`` with the inverse ``x = (y - offset) / scale``; they apply to
numpy arrays and torch tensors alike (last axis = features) and serialise to a dict of lists for
JSON next to a checkpoint.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from polydiff.core.errors import InputError

__all__ = ["KINDS", "Normalizer"]

KINDS = ("limits", "gaussian")


@dataclasses.dataclass(eq=False)
class Normalizer:
    """``y = x * scale + offset`` per feature; build one with :meth:`fit`."""

    kind: str
    scale: np.ndarray
    offset: np.ndarray

    def __post_init__(self):
        self.scale = np.asarray(self.scale, dtype=np.float64)
        self.offset = np.asarray(self.offset, dtype=np.float64)

    @classmethod
    def fit(cls, kind: str, x, eps: float = 1e-4) -> Normalizer:
        """Fit to samples ``x`` (..., features). ``limits`` maps each feature's [min, max] to
        [-1, 1]; ``gaussian`` maps its mean / std to 0 / 1. A feature whose range (std) is below
        ``eps`` is only shifted: to 0 (as diffusion_policy does for constant features)."""
        if kind not in KINDS:
            raise InputError(f"normalizer: unknown kind {kind!r} (one of {', '.join(KINDS)})")
        x = np.asarray(x, dtype=np.float64).reshape(-1, np.shape(x)[-1])
        if kind == "limits":
            low, high = x.min(0), x.max(0)
            centre, half = (high + low) / 2, (high - low) / 2
            constant = half < eps / 2
        else:
            centre, half = x.mean(0), x.std(0)
            constant = half < eps
        scale = np.where(constant, 1.0, 1.0 / np.where(constant, 1.0, half))
        return cls(kind, scale, -centre * scale)

    def _like(self, x) -> tuple[Any, Any]:
        if isinstance(x, torch.Tensor):
            return (
                torch.as_tensor(self.scale, dtype=x.dtype, device=x.device),
                torch.as_tensor(self.offset, dtype=x.dtype, device=x.device),
            )
        dtype = np.asarray(x).dtype if np.asarray(x).dtype.kind == "f" else np.float64
        return self.scale.astype(dtype), self.offset.astype(dtype)

    def normalize(self, x):
        scale, offset = self._like(x)
        return x * scale + offset

    def unnormalize(self, y):
        scale, offset = self._like(y)
        return (y - offset) / scale

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "scale": self.scale.tolist(), "offset": self.offset.tolist()}

    @classmethod
    def from_dict(cls, d: Any, source: str = "normalizer") -> Normalizer:
        """The inverse of :meth:`to_dict`, checked (``source`` names the file in errors)."""
        if not isinstance(d, dict) or not {"kind", "scale", "offset"} <= set(d):
            raise InputError(f"{source}: a normalizer needs 'kind', 'scale' and 'offset'")
        if d["kind"] not in KINDS:
            raise InputError(f"{source}: unknown normalizer kind {d['kind']!r}")
        try:
            scale = np.asarray(d["scale"], dtype=np.float64)
            offset = np.asarray(d["offset"], dtype=np.float64)
        except (TypeError, ValueError) as err:
            msg = f"{source}: normalizer scale / offset are not numbers ({err})"
            raise InputError(msg) from None
        if scale.ndim != 1 or scale.shape != offset.shape:
            raise InputError(f"{source}: normalizer scale and offset must be equal-length lists")
        if not (np.isfinite(scale).all() and np.isfinite(offset).all() and (scale != 0).all()):
            raise InputError(f"{source}: normalizer scale must be finite and non-zero")
        return cls(d["kind"], scale, offset)
