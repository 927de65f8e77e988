"""Real anatomy: the MNI152 training sources, the held-out subjects, augmented slices."""

from __future__ import annotations

import math

import pytest
import torch

from polydiff.medical.data.anatomy import (
    HELD_OUT,
    Source,
    _slice_grid,
    augmented_slices,
    held_out_volume,
    mni152_sources,
    normalized,
)
from polydiff.medical.prior import PriorConfig, training_slices


def ramp_source() -> Source:
    d, h, w = 20, 24, 28
    return Source(torch.linspace(0, 1, w).expand(d, h, w).clone(), (2.0, 1.0, 1.5))


def test_augmented_slices_are_seeded_and_in_range():
    a = augmented_slices([ramp_source()], 12, 16, seed=3)
    assert a.shape == (12, 16, 16)
    assert torch.equal(a, augmented_slices([ramp_source()], 12, 16, seed=3))
    assert not torch.equal(a, augmented_slices([ramp_source()], 12, 16, seed=4))
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0 + 1e-6  # blur: rounding only
    assert (a.amax(dim=(1, 2)) > 0.5).all()  # the window maps each slice's top near 1


def test_slice_planes_cover_three_orientations_with_small_tilts():
    source = ramp_source()
    depth, height, width = source.data.shape
    dz, dy, dx = source.spacing
    half = torch.tensor([width * dx, height * dy, depth * dz]) / 2
    g = torch.Generator().manual_seed(0)
    normals = []
    for _ in range(60):
        grid = _slice_grid(source, 8, g)[0, 0] * half  # mm, (x, y, z) order
        along_row, along_col = grid[0, -1] - grid[0, 0], grid[-1, 0] - grid[0, 0]
        normal = torch.linalg.cross(along_row, along_col)
        normals.append(normal / normal.norm())
        # half the field of view: 0.8 * 0.9 to 1.25 * 1.1 times the larger in-plane half
        # extent (20 to 21 mm here); the grid spans 7/8 of the field (pixel centres)
        for side in (along_row, along_col):
            assert 0.72 * 20 <= float(side.norm()) / (2 * 7 / 8) <= 1.375 * 21
    cosines = torch.stack(normals).abs()
    axis = cosines.argmax(1)
    assert set(axis.tolist()) == {0, 1, 2}  # sagittal (x), coronal (y) and axial (z) normals
    tilt = torch.rad2deg(torch.arccos(cosines.max(1).values.clamp(max=1)))
    assert float(tilt.max()) <= 15.0  # two tilts of at most 10 degrees each
    assert float(tilt.max()) > 1.0  # and they do tilt


def test_tissue_stacks_get_distinct_random_contrasts():
    d = 16
    grey = torch.zeros(d, d, d)
    grey[:, :, : d // 2] = 1  # two tissues side by side, full field of view
    source = Source(torch.stack([grey, 1 - grey]), (1.0, 1.0, 1.0))
    slices = augmented_slices([source], 20, 16, seed=0)
    left, right = slices[:, 6:10, 1:4].mean((1, 2)), slices[:, 6:10, 12:15].mean((1, 2))
    assert ((left - right).abs() > 0.05).float().mean() > 0.4  # mostly distinct tissues
    assert (left > right).any() and (right > left).any()  # in both orders


@pytest.mark.parametrize(
    ("args", "message"),
    [((0, 16), "n >= 1"), ((4, 4), "size >= 8"), ((4, 16, 0, []), "sources")],
)
def test_augmented_slices_bad_input(args, message):
    n, size, *rest = args
    sources = rest[1] if len(rest) > 1 else [ramp_source()]
    with pytest.raises(ValueError, match=message):
        augmented_slices(sources, n, size)


def test_mni152_sources_and_anatomy_training_slices():
    t1, tissues = mni152_sources()
    assert t1.data.shape == (95, 117, 99) and t1.spacing == (2.0, 2.0, 2.0)
    assert tissues.data.shape == (3, 95, 117, 99)
    assert float(t1.data.max()) == 1.0 and float(tissues.data.min()) >= 0.0
    brain = t1.data > 0.02
    assert 0.2 < float(brain.float().mean()) < 0.6
    config = PriorConfig(image_size=16, data_kind="anatomy", n_volumes=2, seed=1)
    slices = training_slices(config)
    assert slices.shape == (32, 1, 16, 16)
    assert torch.equal(slices[:, 0], augmented_slices(mni152_sources(), 32, 16, seed=1))


@pytest.mark.parametrize(
    ("role", "name", "shape", "spacing"),
    [
        ("tune", "example4d", (24, 96, 128), (2.2, 2, 2)),
        ("test", "aniso_vox", (24, 58, 58), (5, 4, 4)),
    ],
)
def test_held_out_subjects(role, name, shape, spacing):
    assert HELD_OUT[role] == name
    volume = held_out_volume(role)
    assert tuple(volume.data.shape) == shape
    assert all(math.isclose(a, b, rel_tol=1e-4) for a, b in zip(volume.spacing, spacing))
    x = normalized(volume)
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0


def test_held_out_bad_role():
    with pytest.raises(ValueError, match="role 'train'"):
        held_out_volume("train")
