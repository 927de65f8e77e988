"""CSP and generation metrics of the CDVAE / DiffCSP protocol (Xie et al. 2022, "Crystal Diffusion
Variational Autoencoder", Sec. 5; Jiao et al. 2023, DiffCSP, Sec. 5.1): structural and
compositional validity, StructureMatcher match rate and RMSE with the random-coordinate baseline
that must always be reported beside the match rate (the matcher's tolerances are loose),
coverage COV-R / COV-P and the Wasserstein distances of density and number of elements.

Compositional validity uses SMACT 2.2.1, the version CDVAE and DiffCSP used (SMACT 2.5+ and 4.x
changed the oxidation states and ``neutral_ratios``)."""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
import smact
import torch
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Composition
from scipy.spatial.distance import cdist
from scipy.stats import wasserstein_distance
from smact.screening import pauling_test

from polydiff.core.metrics import wilson_interval
from polydiff.crystal.data import MIN_DISTANCE, MIN_VOLUME, Crystals, min_distance

__all__ = [
    "COV_CUTOFFS",
    "CSPScore",
    "cell_volume_error",
    "composition_scale",
    "compositional_validity",
    "coverage",
    "csp_match",
    "fingerprints",
    "generation_metrics",
    "property_distances",
    "random_coordinates",
    "smact_valid",
    "structural_validity",
]

# COV thresholds (structure fingerprint distance, composition fingerprint distance) of CDVAE
COV_CUTOFFS = {"mp20": (0.4, 10.0), "carbon": (0.2, 4.0), "perovskite": (0.2, 4.0)}
MAX_OXIDATION_COMBINATIONS = 10**7  # DiffCSP: more oxidation-state combinations count as invalid


def structural_validity(crystals: Crystals) -> list[bool]:
    """Per crystal: every pair of atoms (periodic images included) at least 0.5 Å apart and a
    volume of at least 0.1 Å^3."""
    return [
        bool(abs(s.volume) >= MIN_VOLUME and min_distance(s) >= MIN_DISTANCE)
        for s in crystals.structures()
    ]


@dataclass(frozen=True)
class CSPScore:
    match_rate: float  # matched / all
    rmse: float  # mean normalised RMS displacement over the matches (nan without any)
    rms: tuple[float | None, ...]  # per structure, None where unmatched

    @property
    def match_rate_ci(self) -> tuple[float, float]:
        """95 % Wilson interval of the match rate."""
        return wilson_interval(sum(r is not None for r in self.rms), len(self.rms))

    @property
    def rmse_ci(self) -> tuple[float, float]:
        """95 % normal interval of the mean RMSE over the matches (nan with fewer than 2)."""
        matched = np.array([r for r in self.rms if r is not None])
        if len(matched) < 2:
            return (float("nan"), float("nan"))
        half = 1.96 * matched.std(ddof=1) / math.sqrt(len(matched))
        return (float(matched.mean() - half), float(matched.mean() + half))


def csp_match(
    predicted: Crystals, target: Crystals, stol: float = 0.5, angle_tol: float = 10, ltol=0.3
) -> CSPScore:
    """One prediction per target: pymatgen's StructureMatcher (the protocol's tolerances) and
    its RMS displacement normalised by (V / n)^(1/3)."""
    if len(predicted) != len(target):
        raise ValueError(f"{len(predicted)} predictions for {len(target)} targets")
    matcher = StructureMatcher(stol=stol, angle_tol=angle_tol, ltol=ltol)
    rms: list[float | None] = []
    for a, b in zip(predicted.structures(), target.structures()):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                found = matcher.get_rms_dist(a, b)
        except Exception:  # degenerate predicted lattices make the matcher fail: no match
            found = None
        rms.append(None if found is None else float(found[0]))
    matched = [r for r in rms if r is not None]
    rmse = float(np.mean(matched)) if matched else float("nan")
    return CSPScore(len(matched) / len(rms), rmse, tuple(rms))


def cell_volume_error(predicted: Crystals, target: Crystals) -> dict[str, float]:
    """How far predicted cells are from the true ones in size, one prediction per target: the
    mean relative error |V_pred - V_true| / V_true and the mean volume per atom (Å^3) of each
    (a lattice error the match rate hides when no structure matches)."""
    if len(predicted) != len(target):
        raise ValueError(f"{len(predicted)} predictions for {len(target)} targets")
    pred = torch.linalg.det(predicted.lattice.double()).abs()
    true = torch.linalg.det(target.lattice.double()).abs()
    n = target.num_atoms.double()
    return {
        "relative_error": float(((pred - true).abs() / true).mean()),
        "predicted_per_atom": float((pred / n).mean()),
        "true_per_atom": float((true / n).mean()),
    }


def random_coordinates(target: Crystals, generator: torch.Generator | None = None) -> Crystals:
    """The target crystals with uniformly random fractional coordinates (true lattice and
    types): the baseline match rate of the protocol."""
    frac = torch.rand(target.frac.shape, generator=generator)
    return Crystals(frac, target.lattice, target.numbers, target.num_atoms, target.names)


@cache
def smact_valid(composition: str) -> bool:
    """CDVAE's SMACT screening of a composition (formula string): one element, or only metals
    (an alloy), is valid; otherwise valid where some choice of SMACT oxidation states makes
    the reduced formula charge-neutral and passes the Pauling electronegativity test (missing
    electronegativities pass); more than 1e7 oxidation-state choices is invalid (DiffCSP)."""
    reduced = Composition(composition).reduced_composition
    symbols = [e.symbol for e in reduced.elements]
    counts = [round(reduced[e]) for e in symbols]
    if len(symbols) == 1 or all(s in smact.metals for s in symbols):
        return True
    elements = [smact.Element(s) for s in symbols]
    oxidation = [e.oxidation_states for e in elements]
    if math.prod(len(o) for o in oxidation) > MAX_OXIDATION_COMBINATIONS:
        return False
    negativities = [e.pauling_eneg for e in elements]
    for states in itertools.product(*oxidation):
        neutral, _ = smact.neutral_ratios(
            states, stoichs=[(c,) for c in counts], threshold=max(counts)
        )
        if not neutral:
            continue
        try:
            if pauling_test(states, negativities):
                return True
        except TypeError:  # an element without a Pauling electronegativity: not tested
            return True
    return False


def compositional_validity(crystals: Crystals) -> list[bool]:
    """Per crystal: :func:`smact_valid` of its composition."""
    return [smact_valid(f) for f in crystals.formulas()]


@cache
def _featurizers():
    from matminer.featurizers.composition.composite import ElementProperty
    from matminer.featurizers.site.fingerprint import CrystalNNFingerprint

    site = CrystalNNFingerprint.from_preset("ops", distance_cutoffs=None, x_diff_weight=0)
    return site, ElementProperty.from_preset("magpie")


@cache
def composition_scale() -> np.ndarray:
    """Per Magpie feature, the standard deviation over the elements H..Pu of the elemental
    property it is a statistic of (minimum, maximum, range, mean, deviation and mode of one
    property share its scale): a fixed scale that does not depend on the sets compared."""
    from pymatgen.core import Element

    composition = _featurizers()[1]
    table = np.array(
        [composition.featurize(Composition(Element.from_Z(z).symbol)) for z in range(1, 95)]
    ).reshape(94, len(composition.features), len(composition.stats))
    spread = table[:, :, composition.stats.index("mean")].std(0)
    return np.repeat(np.where(spread > 0, spread, 1.0), len(composition.stats))


def fingerprints(crystals: Crystals) -> tuple[np.ndarray, np.ndarray]:
    """CDVAE's fingerprints per crystal: the CrystalNN "ops" site fingerprints (matminer)
    averaged over the sites [B, 61] and the Magpie composition features divided by
    :func:`composition_scale` [B, 132]; a row of nan where a structure cannot be
    fingerprinted."""
    site, composition = _featurizers()
    struct, comp = [], []
    for s in crystals.structures():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                struct.append(np.mean([site.featurize(s, i) for i in range(len(s))], 0))
            except Exception:  # CrystalNN fails on some degenerate cells: no fingerprint
                struct.append(np.full(61, np.nan))
            comp.append(np.asarray(composition.featurize(s.composition), dtype=float))
    return np.array(struct, dtype=float), np.array(comp, dtype=float) / composition_scale()


def coverage(
    generated: tuple[np.ndarray, np.ndarray],
    reference: tuple[np.ndarray, np.ndarray],
    cutoffs: tuple[float, float],
    valid: Sequence[bool] | None = None,
) -> tuple[float, float]:
    """(COV-R, COV-P) of CDVAE from :func:`fingerprints`: a reference crystal is recalled when
    some valid generated one is within both cutoffs of it (Euclidean distances of the structure
    and of the composition fingerprints), a generated one is precise when some reference
    crystal is within both of it. Invalid or unfingerprinted generated crystals count as
    neither but stay in COV-P's denominator."""
    g_struct, g_comp = generated
    r_struct, r_comp = reference
    keep = ~np.isnan(g_struct).any(1) & ~np.isnan(g_comp).any(1)
    if valid is not None:
        keep &= np.asarray(valid, dtype=bool)
    if not keep.any():
        return 0.0, 0.0
    close = (cdist(g_struct[keep], r_struct) <= cutoffs[0]) & (
        cdist(g_comp[keep], r_comp) <= cutoffs[1]
    )
    return float(close.any(0).mean()), float(close.any(1).sum() / len(g_struct))


def property_distances(generated: Crystals, reference: Crystals) -> dict[str, float]:
    """Wasserstein distances between the generated and reference distributions of density
    (g/cm^3) and of the number of distinct elements per crystal."""
    gen, ref = generated.structures(), reference.structures()
    return {
        "wdist_density": float(
            wasserstein_distance([s.density for s in gen], [s.density for s in ref])
        ),
        "wdist_num_elements": float(
            wasserstein_distance(
                [len(s.composition) for s in gen], [len(s.composition) for s in ref]
            )
        ),
    }


def generation_metrics(
    generated: Crystals,
    reference: Crystals,
    cutoffs: tuple[float, float],
    reference_fingerprints: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, float]:
    """CDVAE's generation metrics: structural, compositional and overall validity (both),
    COV-R / COV-P (valid crystals only, ``cutoffs`` from :data:`COV_CUTOFFS`) and the
    property Wasserstein distances over the valid crystals. ``reference_fingerprints``:
    :func:`fingerprints` of ``reference`` where already computed."""
    structural = np.array(structural_validity(generated))
    composition = np.array(compositional_validity(generated))
    valid = structural & composition
    ref = fingerprints(reference) if reference_fingerprints is None else reference_fingerprints
    recall, precision = coverage(fingerprints(generated), ref, cutoffs, valid)
    out = {
        "structural_validity": float(structural.mean()),
        "compositional_validity": float(composition.mean()),
        "validity": float(valid.mean()),
        "cov_recall": recall,
        "cov_precision": precision,
    }
    kept = generated[np.flatnonzero(valid).tolist()]
    if len(kept):
        out.update(property_distances(kept, reference))
    else:
        out.update(wdist_density=float("nan"), wdist_num_elements=float("nan"))
    return out
