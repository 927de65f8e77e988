"""Distances between sample sets (sample quality of demos, benchmarks and tests)."""

from __future__ import annotations

import torch
from torch import Tensor


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


__all__ = ["sliced_wasserstein"]
