"""Cartesian k-space undersampling masks (centred k-space: DC at index ``(H // 2, W // 2)``).

All masks are boolean tensors of shape ``(H, W)``. The 1D masks sample whole lines: every row
``kx`` (readout, fully sampled) at the chosen phase-encode columns ``ky``. Every generator takes
a ``generator`` or ``seed`` so the same call gives the same mask.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import torch
from torch import Tensor


def _check(shape: tuple[int, int], acceleration: float, acs_fraction: float) -> tuple[int, int]:
    if len(shape) != 2 or min(shape) < 2:
        raise ValueError(f"mask shape must be (H, W) with H, W >= 2, got {shape}")
    if not acceleration >= 1:
        raise ValueError(f"acceleration must be >= 1, got {acceleration}")
    if not 0 <= acs_fraction < 1:
        raise ValueError(f"acs_fraction must be in [0, 1), got {acs_fraction}")
    return int(shape[0]), int(shape[1])


def _centre_lines(n: int, fraction: float) -> slice:
    """The ``round(fraction * n)`` lines around the DC line ``n // 2``."""
    k = round(fraction * n)
    start = n // 2 - k // 2
    return slice(start, start + k)


def _offsets(n: int, std_fraction: float) -> Tensor:
    """Distances of the ``n`` lines from DC (``n // 2``) in units of ``std_fraction * n``."""
    return (torch.arange(n, dtype=torch.float64) - n // 2) / (std_fraction * n)


def _draw_more(
    sampled: Tensor, total: int, density: Tensor, generator: torch.Generator | None
) -> None:
    """Sample more of the boolean ``sampled`` in place, until ``total`` are: drawn without
    replacement among the rest with probabilities proportional to ``density``."""
    n_more = max(total - int(sampled.sum()), 0)
    if n_more:
        p = (density * (~sampled)).flatten()
        draws = torch.multinomial(p, n_more, replacement=False, generator=generator)
        sampled.view(-1)[draws] = True


def acceleration_of(mask: Tensor) -> float:
    """The achieved acceleration ``numel / number sampled``."""
    return mask.numel() / max(int(mask.sum()), 1)


def uniform1d_mask(
    shape: tuple[int, int], acceleration: int = 4, acs_fraction: float = 0.08
) -> Tensor:
    """Every ``acceleration``-th phase-encode line (aligned on the DC line) plus a fully
    sampled autocalibration (ACS) band of ``acs_fraction * W`` central lines.

    DiffusionMBIR's uniform1d MRI setting uses x2 with 15% ACS.
    """
    h, w = _check(shape, acceleration, acs_fraction)
    if int(acceleration) != acceleration:
        raise ValueError(f"uniform1d needs an integer acceleration, got {acceleration}")
    cols = torch.zeros(w, dtype=torch.bool)
    cols[(w // 2) % int(acceleration) :: int(acceleration)] = True
    cols[_centre_lines(w, acs_fraction)] = True
    return cols.expand(h, w).clone()


def gaussian_mask(
    shape: tuple[int, int],
    acceleration: float = 4,
    acs_fraction: float = 0.08,
    std_fraction: float = 0.25,
    generator: torch.Generator | None = None,
    *,
    lines: bool = True,
) -> Tensor:
    """Samples drawn without replacement with a Gaussian density around DC (std
    ``std_fraction`` of each side) on top of a fully sampled ACS region, ``1 / acceleration``
    of k-space in all: whole phase-encode lines and the ACS band (``lines=True``), or single
    points and a central ACS box."""
    h, w = _check(shape, acceleration, acs_fraction)
    if lines:
        cols = torch.zeros(w, dtype=torch.bool)
        cols[_centre_lines(w, acs_fraction)] = True
        density = torch.exp(-0.5 * _offsets(w, std_fraction) ** 2)
        _draw_more(cols, round(w / acceleration), density, generator)
        return cols.expand(h, w).clone()
    mask = torch.zeros(h, w, dtype=torch.bool)
    mask[_centre_lines(h, acs_fraction), _centre_lines(w, acs_fraction)] = True
    ky, kx = _offsets(h, std_fraction)[:, None], _offsets(w, std_fraction)[None, :]
    _draw_more(mask, round(h * w / acceleration), torch.exp(-0.5 * (ky**2 + kx**2)), generator)
    return mask


def gaussian1d_mask(shape: tuple[int, int], acceleration: float = 4, **options: Any) -> Tensor:
    """Phase-encode lines with a Gaussian density (std ``std_fraction * W`` lines) around DC,
    plus the ACS band, ``round(W / acceleration)`` in all (:func:`gaussian_mask`'s options:
    ``acs_fraction=0.08``, ``std_fraction=0.25``, ``generator``)."""
    return gaussian_mask(shape, acceleration, **options, lines=True)


def gaussian2d_mask(shape: tuple[int, int], acceleration: float = 4, **options: Any) -> Tensor:
    """k-space points with a 2D Gaussian density, plus a fully sampled central ACS box,
    ``round(H W / acceleration)`` in all (options as :func:`gaussian1d_mask`)."""
    return gaussian_mask(shape, acceleration, **options, lines=False)


def _dart_throw(order: np.ndarray, radius: np.ndarray, h: int, w: int) -> np.ndarray:
    """Accept grid points in the given order unless an accepted point lies closer than the
    candidate's radius (random sequential adsorption: a Poisson-disc pattern on the grid)."""
    accepted = np.zeros((h, w), dtype=bool)
    r_max = math.ceil(float(radius.max()))
    yy, xx = np.mgrid[-r_max : r_max + 1, -r_max : r_max + 1]
    dist2 = yy**2 + xx**2
    for idx in order:
        i, j = divmod(int(idx), w)
        r = radius[i, j]
        ri = math.ceil(r) - 1  # neighbours strictly closer than r lie within |di|, |dj| <= ri
        if ri <= 0:  # r <= 1: no other grid point is closer than r
            accepted[i, j] = True
            continue
        i0, i1, j0, j1 = max(i - ri, 0), min(i + ri + 1, h), max(j - ri, 0), min(j + ri + 1, w)
        window = accepted[i0:i1, j0:j1]
        near = dist2[i0 - i + r_max : i1 - i + r_max, j0 - j + r_max : j1 - j + r_max] < r * r
        if not np.any(window & near):
            accepted[i, j] = True
    return accepted


def poisson_disc_mask(
    shape: tuple[int, int],
    acceleration: float = 4,
    acs_fraction: float = 0.08,
    power: float = 2.0,
    seed: int = 0,
    tolerance: float = 0.02,
) -> Tensor:
    """Variable-density Poisson-disc mask (as used for compressed-sensing MRI; Lustig, Donoho
    and Pauly, 2007, "Sparse MRI", Magn. Reson. Med. 58(6); the variable-radius dart throwing
    of BART's / SigPy's ``poisson``).

    Points are at least ``r(k) = 1 + slope * |k|^power`` apart (``|k|`` the k-space radius
    normalised to 1 at the edge of the ellipse inscribed in the grid), so sampling is dense at
    the centre and sparse outward; ``slope`` is found by bisection so that the achieved
    acceleration (ACS box included) is within ``tolerance`` (relative) of the target, or as
    close as the grid allows.
    """
    h, w = _check(shape, acceleration, acs_fraction)
    rng = np.random.default_rng(seed)
    order = rng.permutation(h * w)
    ky = (np.arange(h) - h // 2)[:, None] / (h / 2)
    kx = (np.arange(w) - w // 2)[None, :] / (w / 2)
    k = np.sqrt(ky**2 + kx**2)
    acs = np.zeros((h, w), dtype=bool)
    acs[_centre_lines(h, acs_fraction), _centre_lines(w, acs_fraction)] = True
    target = h * w / acceleration

    @functools.cache
    def sample(slope: float) -> np.ndarray:
        return _dart_throw(order, 1.0 + slope * k**power, h, w) | acs

    lo, hi = 0.0, 1.0
    while sample(hi).sum() > target and hi < 1e4:  # grow until too sparse
        lo, hi = hi, 2 * hi
    best = sample(lo)
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        m = sample(mid)
        if abs(m.sum() - target) < abs(best.sum() - target):
            best = m
        if abs(m.sum() - target) <= tolerance * target:
            break
        lo, hi = (mid, hi) if m.sum() > target else (lo, mid)
    return torch.from_numpy(best)


def make_mask(
    kind: str, shape: tuple[int, int], acceleration: float = 4, seed: int = 0, **kwargs
) -> Tensor:
    """Build a mask by name: ``uniform1d``, ``gaussian1d``, ``gaussian2d`` or ``poisson``."""
    if kind == "uniform1d":
        return uniform1d_mask(shape, acceleration, **kwargs)
    if kind in ("gaussian1d", "gaussian2d"):
        gen = torch.Generator().manual_seed(seed)
        fn = gaussian1d_mask if kind == "gaussian1d" else gaussian2d_mask
        return fn(shape, acceleration, generator=gen, **kwargs)
    if kind == "poisson":
        return poisson_disc_mask(shape, acceleration, seed=seed, **kwargs)
    raise ValueError(
        f"unknown mask kind {kind!r}; choose uniform1d, gaussian1d, gaussian2d or poisson"
    )
