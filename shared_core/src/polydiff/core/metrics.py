"""Distances between sample sets and the intervals every benchmark reports around its means
and rates (sample quality of demos, benchmarks and tests)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor

from polydiff.core.errors import InputError


def sliced_wasserstein(
    x: Tensor,
    y: Tensor,
    n_projections: int = 512,
    *,
    p: float = 2.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Monte Carlo sliced p-Wasserstein distance between two equal-size point clouds.

    Rabin, Peyré, Delon & Bernot (2011), "Wasserstein Barycenter and its Application to Texture
    Mixing"; Bonneel, Rabin, Peyré & Pfister (2015), "Sliced and Radon Wasserstein Barycenters of
    Measures", Eq. (1): SW_p(X, Y)^p = E_theta[ W_p^p(<theta, X>, <theta, Y>) ] with theta uniform
    on the unit sphere. In 1-D, W_p between two n-point empirical measures matches sorted values.

    Args:
        x, y: [n, d] samples (same n and d).
        n_projections: number of random directions theta.
        p: order of the Wasserstein distance (>= 1).
        generator: draws the directions (same generator state => same directions).

    Returns:
        A 0-dim tensor (dtype of x) holding the estimate of SW_p.
    """
    if x.ndim != 2 or y.ndim != 2 or x.shape != y.shape:
        raise ValueError(f"x and y must both be [n, d] with equal shapes, got {x.shape}, {y.shape}")
    if n_projections < 1 or p < 1:
        raise ValueError(f"need n_projections >= 1 and p >= 1, got {n_projections}, {p}")
    theta = torch.randn(x.shape[1], n_projections, generator=generator, dtype=torch.float64)
    theta = (theta / theta.norm(dim=0, keepdim=True)).to(device=x.device, dtype=x.dtype)
    proj_x = (x @ theta).sort(dim=0).values
    proj_y = (y @ theta).sort(dim=0).values
    return (proj_x - proj_y).abs().pow(p).mean().pow(1.0 / p)


def frechet_distance(mean_a: Tensor, cov_a: Tensor, mean_b: Tensor, cov_b: Tensor) -> float:
    """Frechet (2-Wasserstein squared) distance of two Gaussians (Dowson & Landau 1982):
    |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2), in float64. The trace of the
    matrix square root is the sum of the square roots of the eigenvalues of the symmetric
    S_a^1/2 S_b S_a^1/2, so no non-symmetric square root is needed."""
    mean_a, cov_a, mean_b, cov_b = (v.double() for v in (mean_a, cov_a, mean_b, cov_b))
    values, vectors = torch.linalg.eigh(cov_a)
    root_a = (vectors * values.clamp_min(0).sqrt()) @ vectors.T
    middle = root_a @ cov_b @ root_a
    cross = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0).sqrt().sum()
    distance = (mean_a - mean_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * cross
    return float(distance.clamp_min(0))


def _gaussian_fit(features: Tensor, name: str) -> tuple[Tensor, Tensor]:
    if features.ndim != 2 or len(features) < 2:
        raise InputError(
            f"{name}: FID needs at least 2 feature vectors [N, D], got {features.shape}"
        )
    features = features.double()
    return features.mean(0), torch.cov(features.T)


def fid(features: Tensor, reference: Tensor) -> float:
    """Frechet distance between the Gaussians fitted to two sets of feature vectors ``[N, D]``
    (sample mean and unbiased covariance): the FID of Heusel et al. (2017) in whatever feature
    space the features come from (e.g. HumanML3D / MDM's motion encoder)."""
    return frechet_distance(
        *_gaussian_fit(features, "features"), *_gaussian_fit(reference, "reference")
    )


def fid_bootstrap(
    sets: Mapping[str, Tensor],
    reference: Tensor,
    *,
    strata: Tensor | None = None,
    resample_reference: bool = True,
    resamples: int = 1000,
    seed: int = 0,
) -> dict[str, Tensor]:
    """FIDs ``[resamples]`` of each set of features against ``reference`` over bootstrap draws
    (Efron & Tibshirani 1993). Each draw resamples the sets' rows with ONE index vector shared
    by every set (equal counts; row i of each set is the same sample slot, e.g. the same action
    and noise seed), so two sets' differences are paired; ``strata`` (a label per row) resamples
    within each label, keeping a design's counts (e.g. clips per action); the reference's rows
    are resampled too unless ``resample_reference`` is False (a fixed, designed reference)."""
    sizes = {len(features) for features in sets.values()}
    if len(sizes) != 1:
        raise InputError(f"sets: paired FID needs equal numbers of feature vectors, got {sizes}")
    n, m = sizes.pop(), len(reference)
    labels = torch.zeros(n, dtype=torch.long) if strata is None else torch.as_tensor(strata)
    if labels.shape != (n,):
        raise InputError(f"strata: one label per row ({n}), got shape {tuple(labels.shape)}")
    groups = [(labels == v).nonzero().flatten() for v in labels.unique()]
    generator = torch.Generator().manual_seed(seed)
    ref = _gaussian_fit(reference, "reference")
    draws: dict[str, list[float]] = {name: [] for name in sets}
    for _ in range(resamples):
        rows = torch.empty(n, dtype=torch.long)
        for group in groups:
            rows[group] = group[torch.randint(len(group), (len(group),), generator=generator)]
        if resample_reference:
            ref = _gaussian_fit(reference[torch.randint(m, (m,), generator=generator)], "ref")
        for name, features in sets.items():
            draws[name].append(frechet_distance(*_gaussian_fit(features[rows], name), *ref))
    return {name: torch.tensor(values, dtype=torch.float64) for name, values in draws.items()}


def bootstrap_mean(
    values: Tensor, *, level: float = 0.95, resamples: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """The mean of ``values`` [N] and the percentile bootstrap interval of the mean at ``level``
    (Efron & Tibshirani 1993, ch. 13), resampling the N values with a seeded generator."""
    values = torch.as_tensor(values).double().flatten()
    if values.numel() < 2:
        raise InputError(f"values: a confidence interval needs 2 or more values, got {len(values)}")
    generator = torch.Generator().manual_seed(seed)
    idx = torch.randint(len(values), (resamples, len(values)), generator=generator)
    means = values[idx].mean(1)
    tail = (1 - level) / 2
    lo, hi = torch.quantile(means, torch.tensor([tail, 1 - tail], dtype=means.dtype))
    return float(values.mean()), float(lo), float(hi)


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a success rate (Wilson 1927; 95 % at z = 1.96): stays inside
    [0, 1] and is not degenerate at 0 or n successes, unlike the normal approximation. With no
    trials nothing is known: (0, 1)."""
    if n < 1:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


__all__ = [
    "bootstrap_mean",
    "fid",
    "fid_bootstrap",
    "frechet_distance",
    "sliced_wasserstein",
    "wilson_interval",
]
