"""Fitting a volume of any size to a prior's slice size: centre crop / pad, or resample, with
the affine changed so every voxel keeps its place in the world (scanner mm).

Voxel ``(i, j, k)`` of :class:`~polydiff.medical.data.Volume` is ``data[k, j, i]``; the new
affine is ``affine @ M`` where ``M`` maps new voxel indices to old ones: a shift for crop /
pad, ``i_old = (i_new + 1/2) n_old / n_new - 1/2`` per axis for resampling (voxel centres of
the same field of view, as ``torch.nn.functional.interpolate`` with ``align_corners=False``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch.nn.functional as F

from polydiff.core.errors import InputError
from polydiff.medical.data.volume import Volume

#: how :func:`fit_volume` brings a volume to a shape
FIT_MODES = ("auto", "none", "crop_pad", "resample")


def target_shape(volume: Volume, shape: Sequence[int | None], option: str = "shape"):
    """``shape`` ``(D, H, W)`` with ``None`` entries filled from the volume (kept axes)."""
    if len(shape) != 3:
        raise InputError(f"{option}: expected (D, H, W), got {list(shape)}")
    out = []
    for n, old in zip(shape, volume.data.shape, strict=True):
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise InputError(f"{option}: sizes must be integers >= 1 or null, got {list(shape)}")
        out.append(old if n is None else n)
    return tuple(out)


def _with_index_map(volume: Volume, data, scale: np.ndarray, offset: np.ndarray) -> Volume:
    """``data`` on the grid whose voxel ``(i, j, k)`` sits at old index ``scale * ijk +
    offset`` (both in ``(i, j, k)`` order)."""
    index_map = np.eye(4)
    index_map[:3, :3] = np.diag(scale)
    index_map[:3, 3] = offset
    return Volume(data.contiguous(), np.asarray(volume.affine, dtype=np.float64) @ index_map)


def crop_or_pad(volume: Volume, shape: Sequence[int | None]) -> Volume:
    """The centred ``shape`` window of the volume: axes longer than ``shape`` are cropped, shorter
    ones padded with the volume's minimum (its background); ``None`` keeps an axis."""
    shape = target_shape(volume, shape)
    starts = [(old - new) // 2 for old, new in zip(volume.data.shape, shape, strict=True)]
    pad = []  # F.pad's order: last axis first, (before, after) each
    for start, old, new in zip(starts[::-1], volume.data.shape[::-1], shape[::-1], strict=True):
        pad += [max(-start, 0), max(new - old + start, 0)]
    data = F.pad(volume.data, pad, value=float(volume.data.min())) if any(pad) else volume.data
    first = [max(s, 0) for s in starts]
    data = data[tuple(slice(f, f + n) for f, n in zip(first, shape, strict=True))]
    return _with_index_map(volume, data, np.ones(3), np.array(starts[::-1], dtype=np.float64))


def resample(volume: Volume, shape: Sequence[int | None]) -> Volume:
    """The volume resampled (trilinear) to ``shape`` over the same field of view; the voxel
    size of each axis changes by ``n_old / n_new``. ``None`` keeps an axis."""
    shape = target_shape(volume, shape)
    data = F.interpolate(volume.data[None, None].float(), size=shape, mode="trilinear",
                         align_corners=False)[0, 0]  # fmt: skip
    ratio = np.array([old / new for old, new in zip(volume.data.shape, shape, strict=True)])
    ratio = ratio[::-1]  # (D, H, W) -> (i, j, k)
    return _with_index_map(volume, data, ratio, (ratio - 1) / 2)


def fit_volume(volume: Volume, mode: str, shape: Sequence[int | None], option: str = "fit"):
    """``volume`` brought to ``shape`` by ``mode``: ``none`` (refused unless it already has
    that shape), ``crop_pad`` (:func:`crop_or_pad`), ``resample`` (:func:`resample`) or
    ``auto`` (resample where the shape differs)."""
    if mode not in FIT_MODES:
        raise InputError(f"{option}={mode!r}: choose one of {', '.join(FIT_MODES)}")
    shape = target_shape(volume, shape, f"{option} shape")
    if tuple(volume.data.shape) == shape:
        return volume
    if mode == "none":
        if tuple(volume.data.shape) != shape:
            raise InputError(
                f"{option}=none: the volume is {tuple(volume.data.shape)}, {shape} is needed; "
                f"use {option}=resample or {option}=crop_pad"
            )
    return crop_or_pad(volume, shape) if mode == "crop_pad" else resample(volume, shape)
