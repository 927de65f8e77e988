"""Small tensor helpers shared by paths, parameterizations and solvers."""

from __future__ import annotations

from torch import Tensor


def expand_like(c: Tensor, x: Tensor) -> Tensor:
    """Cast a time coefficient to ``x``'s dtype and append singleton dims so it broadcasts.

    ``c`` is 0-dim (time shared by the batch), ``[B]`` (per sample) or ``[B, L]`` (per position);
    trailing dims are added so that its leading dims line up with ``x``'s.
    """
    c = c.to(dtype=x.dtype)
    return c.reshape(*c.shape, *([1] * (x.ndim - c.ndim)))


__all__ = ["expand_like"]
