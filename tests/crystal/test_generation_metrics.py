"""Generation metrics on hand-checked cases: SMACT compositional validity of known valid and
invalid formulas (checked by hand from SMACT 2.2.1's oxidation states), COV-R / COV-P on
fingerprints whose distances are known, fingerprints invariant to the origin and atom order,
the composition scale, Wasserstein distances of density and element counts in closed form."""

from __future__ import annotations

from importlib.metadata import version

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from polydiff.crystal.data import Crystals, read_crystals
from polydiff.crystal.metrics import (
    COV_CUTOFFS,
    composition_scale,
    compositional_validity,
    coverage,
    fingerprints,
    generation_metrics,
    property_distances,
    smact_valid,
)

PEROVSKITE = [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]


def perovskite(a: str, b: str, x: str = "O", length: float = 3.9) -> Structure:
    return Structure(Lattice.cubic(length), [a, b, x, x, x], PEROVSKITE)


def rocksalt(length: float = 5.64) -> Structure:
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(length), ["Na", "Cl"], [[0] * 3, [0.5] * 3]
    )


def test_smact_version_is_the_papers():
    assert version("smact") == "2.2.1"


@pytest.mark.parametrize(
    "formula, valid",
    [
        ("SrTiO3", True),  # Sr+2 Ti+4 O-2
        ("NaCl", True),
        ("Fe2O3", True),  # Fe+3
        ("C", True),  # one element
        ("CuZn", True),  # only metals: an alloy
        ("LiF2", False),  # Li has only +1 and F only -1: no neutral choice
        ("NaCl2", False),  # Na +-1, Cl odd states: 2 x Cl can never cancel an odd charge
        ("KO2", False),  # K+1 needs O at -1/2
    ],
)
def test_smact_validity_of_known_formulas(formula, valid):
    assert smact_valid(formula) is valid


def test_compositional_validity_reads_each_crystal():
    crystals = read_crystals([perovskite("Sr", "Ti"), perovskite("Li", "Li", "F")], niggli=False)
    assert compositional_validity(crystals) == [True, False]  # SrTiO3, Li2F3


def test_coverage_on_fingerprints_with_known_distances():
    reference = (np.array([[0.0, 0.0], [1.0, 1.0]]), np.array([[0.0], [10.0]]))
    generated = (
        np.array([[0.0, 0.1], [5.0, 5.0], [1.0, 1.0]]),  # near ref 0 | far | equal to ref 1
        np.array([[0.1], [10.0], [10.0]]),  # composition 0.1 from ref 0
    )
    recall, precision = coverage(generated, reference, (0.2, 0.5), valid=[True, True, False])
    assert recall == 0.5  # ref 0 only: ref 1's only close crystal is invalid
    assert precision == pytest.approx(1 / 3)  # the invalid one stays in the denominator
    recall, precision = coverage(generated, reference, (0.2, 0.05), valid=[True, True, False])
    assert (recall, precision) == (0.0, 0.0)  # composition 0.1 > 0.05
    recall, precision = coverage(generated, reference, (0.2, 0.5))
    assert (recall, precision) == (1.0, pytest.approx(2 / 3))


def test_composition_scale_is_the_spread_of_each_elemental_property():
    """The 6 statistics of one property share its spread over the elements; for the atomic
    number (the first property) that is the std of 1..94."""
    scale = composition_scale()
    assert scale.shape == (132,)
    np.testing.assert_allclose(scale[:6], np.arange(1, 95).std())
    assert (scale > 0).all()


def test_fingerprints_ignore_origin_and_order_and_separate_structures():
    cell = perovskite("Sr", "Ti")
    moved = Structure(
        cell.lattice,
        [cell.species[i] for i in (4, 2, 0, 3, 1)],
        (np.array([cell.frac_coords[i] for i in (4, 2, 0, 3, 1)]) + 0.31) % 1,
    )
    crystals = read_crystals([cell, moved, rocksalt()], niggli=False)
    struct, comp = fingerprints(crystals)
    assert struct.shape == (3, 61) and comp.shape == (3, 132)
    np.testing.assert_allclose(struct[0], struct[1], atol=1e-8)
    np.testing.assert_allclose(comp[0], comp[1])
    assert np.linalg.norm(struct[0] - struct[2]) > COV_CUTOFFS["perovskite"][0]


def test_property_distances_in_closed_form():
    ref = read_crystals([rocksalt()], niggli=False)
    big = read_crystals([rocksalt(5.64 * 1.1)], niggli=False)
    d = rocksalt().density
    out = property_distances(big, ref)
    assert out["wdist_density"] == pytest.approx(d * (1 - 1 / 1.1**3), rel=1e-6)
    assert out["wdist_num_elements"] == 0
    carbon = read_crystals([Structure(Lattice.cubic(3.57), ["C"], [[0, 0, 0]])], niggli=False)
    assert property_distances(carbon, ref)["wdist_num_elements"] == 1


def test_generation_metrics_of_the_reference_itself_and_of_an_overlap():
    ref = read_crystals(
        [perovskite("Sr", "Ti"), perovskite("Ba", "Zr", length=4.2), rocksalt()], niggli=False
    )
    out = generation_metrics(ref, ref, COV_CUTOFFS["perovskite"])
    assert out["validity"] == out["cov_recall"] == out["cov_precision"] == 1.0
    assert out["wdist_density"] == out["wdist_num_elements"] == 0
    overlap = ref[0]
    overlap = Crystals(
        torch.zeros_like(overlap.frac), overlap.lattice, overlap.numbers, overlap.num_atoms, ("x",)
    )
    out = generation_metrics(Crystals.cat([ref, overlap]), ref, COV_CUTOFFS["perovskite"])
    assert out["structural_validity"] == out["validity"] == 0.75
    assert out["cov_recall"] == 1.0 and out["cov_precision"] == 0.75
