"""Fitting volumes to a prior's size: crop / pad / resample keep every voxel's world position."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from polydiff.core.errors import InputError
from polydiff.medical.data import Volume, load_nifti, save_nifti
from polydiff.medical.data.geometry import crop_or_pad, fit_volume, resample
from polydiff.medical.measurements import ground_truth

# an oblique, anisotropic, shifted voxel-to-world map
AFFINE = np.array(
    [[1.8, 0.2, 0.0, -40.0], [-0.1, 2.1, 0.3, 12.5], [0.0, -0.2, 3.0, 7.0], [0, 0, 0, 1]]
)
LINEAR = np.array([0.3, -0.7, 0.5])  # a field linear in world coordinates: LINEAR . p + 2


def world_points(affine: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """World coordinates (D, H, W, 3) of every voxel centre of a (D, H, W) volume."""
    k, j, i = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    ijk1 = np.stack([i, j, k, np.ones_like(i)], -1).astype(np.float64)
    return (ijk1 @ affine.T)[..., :3]


def linear_volume(shape: tuple[int, int, int]) -> Volume:
    values = world_points(AFFINE, shape) @ LINEAR + 2.0
    return Volume(torch.tensor(values, dtype=torch.float64), AFFINE)


@pytest.mark.parametrize("shape", [(6, 14, 10), (12, 8, 20), (None, 9, 9)])
def test_crop_or_pad_keeps_world_positions(shape):
    vol = linear_volume((9, 11, 13))
    out = crop_or_pad(vol, shape)
    expected = tuple(old if n is None else n for n, old in zip(shape, vol.data.shape, strict=True))
    assert tuple(out.data.shape) == expected
    field = world_points(out.affine, expected) @ LINEAR + 2.0
    inside = out.data != float(vol.data.min())  # padded voxels hold the background
    assert inside.any()
    np.testing.assert_allclose(out.data[inside].numpy(), field[inside.numpy()], atol=1e-9)


@pytest.mark.parametrize("shape", [(9, 20, 26), (5, 7, 6), (None, 16, 16)])
def test_resample_keeps_world_positions(shape):
    vol = linear_volume((9, 11, 13))
    out = resample(vol, shape)
    d, h, w = out.data.shape
    field = world_points(out.affine, (d, h, w)) @ LINEAR + 2.0
    # trilinear interpolation is exact on a linear field away from the clamped border voxels
    inner = (slice(1, -1) if d > 2 else slice(None),) + (slice(1, -1),) * 2
    new_voxel = np.sqrt((out.affine[:3, :3] ** 2).sum(0))
    old_voxel = np.sqrt((AFFINE[:3, :3] ** 2).sum(0))
    ratio = np.array(vol.data.shape[::-1]) / np.array([w, h, d])
    np.testing.assert_allclose(new_voxel, old_voxel * ratio)
    interior = out.data.numpy()[inner] - field[inner]
    # the border clamp reaches one more voxel inwards when downsampling
    assert np.abs(interior[(slice(1, -1),) * 3] if min(d, h, w) > 6 else interior).max() < 1e-4


def test_resample_back_and_forth_and_nifti_round_trip(tmp_path):
    vol = linear_volume((8, 12, 10))
    up = resample(vol, (16, 24, 20))
    save_nifti(Volume(up.data.float(), up.affine), tmp_path / "up.nii.gz")
    back = load_nifti(tmp_path / "up.nii.gz")
    np.testing.assert_allclose(back.affine, up.affine, atol=1e-5)
    down = resample(back, (8, 12, 10))
    np.testing.assert_allclose(down.affine, AFFINE, atol=1e-5)  # the affine round-trips


def test_fit_volume_modes():
    vol = linear_volume((9, 11, 13))
    assert fit_volume(vol, "none", (9, 11, 13)) is vol
    assert fit_volume(vol, "auto", (None, None, None)) is vol
    assert fit_volume(vol, "auto", (9, 16, 16)).data.shape == (9, 16, 16)
    crop = fit_volume(vol, "crop_pad", (None, 8, 8))
    assert torch.equal(crop.data, vol.data[:, 1:9, 2:10])


@pytest.mark.parametrize(
    ("mode", "shape", "message"),
    [
        ("zoom", (None, 8, 8), "fit='zoom': choose one of auto, none, crop_pad, resample"),
        ("none", (None, 8, 8), "fit=none: the volume is (9, 11, 13), (9, 8, 8) is needed"),
        ("resample", (8, 8), "fit shape: expected (D, H, W)"),
        ("resample", (None, 0, 8), "fit shape: sizes must be integers >= 1 or null"),
        ("crop_pad", (None, 8.5, 8), "fit shape: sizes must be integers >= 1 or null"),
        ("crop_pad", (True, 8, 8), "fit shape: sizes must be integers >= 1 or null"),
    ],
)
def test_fit_volume_bad_input(mode, shape, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        fit_volume(linear_volume((9, 11, 13)), mode, shape)


def test_ground_truth_fits_a_nifti_of_any_size(tmp_path):
    vol = linear_volume((7, 30, 22))
    save_nifti(Volume(vol.data.float(), vol.affine), tmp_path / "v.nii.gz")
    truth = ground_truth(tmp_path / "v.nii.gz", fit="resample", shape=(None, 16, 16))
    assert truth.x01.shape == (7, 16, 16) and truth.volume.data.shape == (7, 16, 16)
    assert float(truth.x01.min()) == 0.0 and float(truth.x01.max()) == 1.0
    np.testing.assert_allclose(truth.volume.affine, resample(vol, (7, 16, 16)).affine, atol=1e-5)
    # percentile: the outliers saturate inside [0, 1] (the solvers clamp there), the rest spans it
    robust = ground_truth(tmp_path / "v.nii.gz", intensity="percentile").x01
    assert float(robust.min()) == 0.0 and float(robust.max()) == 1.0
    assert 0.003 < float((robust == 1).float().mean()) < 0.02  # the top 0.5 % and ties
