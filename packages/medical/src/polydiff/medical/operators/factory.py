"""Build a forward operator by name, for configs and the command line."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from polydiff.medical.operators.base import LinearOperator
from polydiff.medical.operators.ct import FanBeamCT, LimitedAngleCT, ParallelBeamCT, RotateSumCT
from polydiff.medical.operators.masks import make_mask
from polydiff.medical.operators.mri import CartesianMRI

OPERATORS = ("parallel", "limited_angle", "fan", "rotate_sum", "mri")


def make_operator(kind: str, image_size: int | Sequence[int], **kwargs: Any) -> LinearOperator:
    """The operator ``kind`` for slices of ``image_size`` (an int or (H, W)).

    ``parallel`` / ``limited_angle`` / ``fan`` / ``rotate_sum`` pass ``kwargs`` to
    :class:`ParallelBeamCT` / :class:`LimitedAngleCT` / :class:`FanBeamCT` / :class:`RotateSumCT`.
    ``mri`` takes ``mask`` (a kind for :func:`make_mask`, default ``"uniform1d"``),
    ``acceleration`` (4), ``seed`` (0), ``real_input`` (True) and further mask arguments.
    """
    if kind == "parallel":
        return ParallelBeamCT(image_size, **kwargs)
    if kind == "limited_angle":
        return LimitedAngleCT(image_size, **kwargs)
    if kind == "fan":
        return FanBeamCT(image_size, **kwargs)
    if kind == "rotate_sum":
        return RotateSumCT(image_size, **kwargs)
    if kind == "mri":
        hw = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        mask_kind = kwargs.pop("mask", "uniform1d")
        real_input = kwargs.pop("real_input", True)
        acceleration = kwargs.pop("acceleration", 4)
        seed = kwargs.pop("seed", 0)
        mask = make_mask(mask_kind, hw, acceleration, seed=seed, **kwargs)
        return CartesianMRI(mask, real_input=real_input)
    raise ValueError(f"unknown operator {kind!r}; choose one of {', '.join(OPERATORS)}")
