"""CSP and validity metrics of the CDVAE / DiffCSP protocol (Xie et al. 2022, "Crystal Diffusion
Variational Autoencoder", Sec. 5; Jiao et al. 2023, DiffCSP, Sec. 5.1): structural validity,
StructureMatcher match rate and RMSE, and the random-coordinate baseline that must always be
reported beside the match rate (the matcher's tolerances are loose)."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from pymatgen.analysis.structure_matcher import StructureMatcher

from polydiff.crystal.data import MIN_DISTANCE, MIN_VOLUME, Crystals

__all__ = [
    "CSPScore",
    "csp_match",
    "random_coordinates",
    "structural_validity",
    "wilson_interval",
]


def structural_validity(crystals: Crystals) -> list[bool]:
    """Per crystal: every pair of atoms (periodic images included) at least 0.5 Å apart and a
    volume of at least 0.1 Å^3."""
    valid = []
    for s in crystals.structures():
        if not abs(s.volume) >= MIN_VOLUME:
            valid.append(False)
            continue
        d = s.distance_matrix + np.eye(len(s)) * 1e9 if len(s) > 1 else np.array([np.inf])
        valid.append(bool(d.min() >= MIN_DISTANCE))
    return valid


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (95 % at z = 1.96): stays inside [0, 1]
    and is not degenerate at 0 or n successes, unlike the normal approximation."""
    if n < 1:
        return (float("nan"), float("nan"))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


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


def random_coordinates(target: Crystals, generator: torch.Generator | None = None) -> Crystals:
    """The target crystals with uniformly random fractional coordinates (true lattice and
    types): the baseline match rate of the protocol."""
    frac = torch.rand(target.frac.shape, generator=generator)
    return Crystals(frac, target.lattice, target.numbers, target.num_atoms, target.names)
