"""CSP metrics on known cases: a structure matches itself moved by a symmetry of the problem (atom
order, origin, a whole cell) with RMS 0, a distorted copy matches with a positive RMS, another
crystal does not; structural validity on known valid and invalid cells."""

from __future__ import annotations

import math

import pytest
import torch
from pymatgen.core import Lattice, Structure

from polydiff.core.metrics import wilson_interval
from polydiff.crystal.data import Crystals, read_crystals, synthetic
from polydiff.crystal.metrics import (
    CSPScore,
    cell_volume_error,
    csp_match,
    random_coordinates,
    structural_validity,
)


@pytest.fixture(scope="module")
def crystals():
    return synthetic(4, seed=3)


def test_a_crystal_matches_its_equivalent_copies(crystals):
    g = torch.Generator().manual_seed(0)
    parts = []
    for i in range(len(crystals)):
        c = crystals[i]
        perm = torch.randperm(int(c.num_atoms), generator=g)
        shift = torch.rand(3, generator=g)
        frac = (c.frac[perm] + shift + torch.randint(-1, 2, (len(perm), 3), generator=g)) % 1
        parts.append(Crystals(frac, c.lattice, c.numbers[perm], c.num_atoms, c.names))
    score = csp_match(Crystals.cat(parts), crystals)
    assert score.match_rate == 1.0 and score.rmse < 1e-6


def test_distortion_raises_the_rms_and_other_crystals_do_not_match():
    cell = Structure(
        Lattice.cubic(4.0),
        ["Ca", "Ti", "O", "O", "O"],
        [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
    )
    target = read_crystals([cell], niggli=False)
    moved = target.frac.clone()
    moved[1] += torch.tensor([0.03, 0.0, 0.0])
    distorted = Crystals(moved, target.lattice, target.numbers, target.num_atoms, target.names)
    score = csp_match(distorted, target)
    assert score.match_rate == 1.0 and 0 < score.rmse < 0.1
    # one of 5 atoms moved by d: after the matcher removes the mean shift the displacements are
    # 4d/5 and -d/5 (x4), RMS sqrt(20/125) d, normalised by (V / n)^(1/3)
    d = 0.03 * 4.0
    assert score.rmse == pytest.approx(math.sqrt(20 / 125) * d / (64 / 5) ** (1 / 3), rel=1e-3)
    squashed = Crystals(
        target.frac,
        target.lattice * torch.tensor([1.0, 1.0, 2.0])[:, None],
        target.numbers,
        target.num_atoms,
        target.names,
    )
    other = csp_match(squashed, target)
    assert other.match_rate == 0.0 and math.isnan(other.rmse) and other.rms == (None,)


def test_cell_volume_error_of_scaled_cells(crystals):
    # cells scaled by 2 along one axis (any sign: a mirrored cell has the same volume) hold
    # twice the volume: relative error 1; the true cells: 0
    flip = torch.tensor([-2.0, 1.0, 1.0])[:, None]
    bigger = Crystals(
        crystals.frac, crystals.lattice * flip, crystals.numbers, crystals.num_atoms, crystals.names
    )
    error = cell_volume_error(bigger, crystals)
    volumes = [s.volume / len(s) for s in crystals.structures()]
    assert error["relative_error"] == pytest.approx(1.0)
    assert error["true_per_atom"] == pytest.approx(sum(volumes) / len(volumes), rel=1e-6)
    assert error["predicted_per_atom"] == pytest.approx(2 * error["true_per_atom"])
    assert cell_volume_error(crystals, crystals)["relative_error"] == pytest.approx(0, abs=1e-9)
    with pytest.raises(ValueError, match="3 predictions for 4 targets"):
        cell_volume_error(crystals[:3], crystals)


def test_random_coordinates_keep_lattice_and_types(crystals):
    rand = random_coordinates(crystals, torch.Generator().manual_seed(0))
    assert torch.equal(rand.lattice, crystals.lattice) and torch.equal(
        rand.numbers, crystals.numbers
    )
    assert not torch.allclose(rand.frac, crystals.frac)


def test_structural_validity_on_known_cells(crystals):
    assert structural_validity(crystals) == [True] * len(crystals)
    c = crystals[0]
    frac = c.frac.clone()
    frac[1] = frac[0] + 0.01  # two atoms on top of each other
    flat = c.lattice.clone()
    flat[0, 2] = 0.0
    flat[0, 1] = 0.0
    flat[0, 0] = flat[0, 0] * 1e-4  # (almost) zero volume
    bad = Crystals.cat(
        [
            Crystals(frac, c.lattice, c.numbers, c.num_atoms, c.names),
            Crystals(c.frac, flat, c.numbers, c.num_atoms, c.names),
        ]
    )
    assert structural_validity(bad) == [False, False]


def test_score_intervals_come_from_the_matches():
    score = CSPScore(0.5, 0.2, (0.1, None, 0.3, None))
    assert score.match_rate_ci == wilson_interval(2, 4)
    low, high = score.rmse_ci
    assert low < 0.2 < high and high - 0.2 == pytest.approx(1.96 * 0.1)  # sd 0.1414 / sqrt 2
    assert all(math.isnan(v) for v in CSPScore(0.25, 0.1, (0.1, None, None, None)).rmse_ci)
