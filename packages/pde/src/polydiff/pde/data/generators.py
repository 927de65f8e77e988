"""Random initial states and control forcings, and whole datasets of solved trajectories.

Burgers (the DiffPhyCon / WDNO control setting, Wei et al. 2024; Hu et al. 2025): x in [0, 1],
u = 0 at both ends, nu = 0.01, t in [0, 1]. Initial state: a positive Gaussian bump (centre
U(0.2, 0.4), amplitude U(0, 2), standard deviation U(0.05, 0.15)) plus a negative one (centre
U(0.6, 0.8), amplitude U(-2, 0), same widths). Forcing: 1 + 7 separable space x time Gaussians
a g(x; c_x, s_x) g(t; c_t, s_t), centres U(0, 1), standard deviations U(0.05, 0.2) (in t: times
t_end), amplitudes
U(-1.5, 1.5); the first is always on, each of the other 7 is on with probability 1/2.

Advection (periodic, PDEBench-style): u0 = a sum of 2 sine modes with wavenumbers in 1..4,
amplitudes U(0, 1) and phases U(0, 2 pi); the trajectory is the exact shift.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from polydiff.core.errors import InputError
from polydiff.pde.solvers import (
    advection_exact,
    burgers_stable_dt,
    grid_1d,
    grid_spacing,
    output_times,
    solve_burgers,
)


@dataclass
class PDEData:
    """Trajectories ``u`` [N, nt, nx] on the grid ``x`` [nx] at times ``t`` [nt], the forcing ``f``
    [N, nt, nx] on the same grid (None for unforced equations) and the parameters ``attrs``
    (always ``dt`` and ``dx``, the output spacings; ``nu`` for Burgers, ``c`` for advection)."""

    u: np.ndarray
    x: np.ndarray
    t: np.ndarray
    f: np.ndarray | None = None
    attrs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class BurgersConfig:
    """Sizes and physics of a Burgers dataset (defaults: DiffPhyCon's 128 points, 11 times)."""

    nx: int = 128
    nt: int = 11
    t_end: float = 1.0
    nu: float = 0.01
    boundary: str = "dirichlet"
    dt: float | None = None  # the largest internal solver step; None: half the stable step
    n_forces: int = 8


def _gaussian(z: np.ndarray, centre: np.ndarray, std: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * ((z - centre) / std) ** 2)


def burgers_initial(n: int, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """[n, nx] initial states: a positive and a negative Gaussian bump (module docstring)."""
    col = (n, 1)
    pos = rng.uniform(0, 2, col) * _gaussian(
        x, rng.uniform(0.2, 0.4, col), rng.uniform(0.05, 0.15, col)
    )
    neg = rng.uniform(-2, 0, col) * _gaussian(
        x, rng.uniform(0.6, 0.8, col), rng.uniform(0.05, 0.15, col)
    )
    return pos + neg


def burgers_forcing(
    n: int, x: np.ndarray, t: np.ndarray, rng: np.random.Generator, n_forces: int = 8
) -> np.ndarray:
    """[n, nt, nx] forcings: sums of separable space x time Gaussians (module docstring)."""
    f = np.zeros((n, t.size, x.size))
    for i in range(n_forces):
        col = (n, 1)
        on = np.ones(col) if i == 0 else rng.integers(0, 2, col).astype(float)
        amp = on * rng.uniform(-1.5, 1.5, col)
        gx = _gaussian(x, rng.uniform(0, 1, col), rng.uniform(0.05, 0.2, col))
        span = t[-1] - t[0]  # time centres and widths scale with the horizon (1 by default)
        gt = _gaussian(t, t[0] + span * rng.uniform(0, 1, col), span * rng.uniform(0.05, 0.2, col))
        f += (amp * gt)[:, :, None] * gx[:, None, :]
    return f


def generate_burgers(
    n: int, config: BurgersConfig = BurgersConfig(), *, seed: int = 0, batch: int = 1024
) -> PDEData:
    """``n`` forced Burgers trajectories with random initial states and forcings, solved by
    ``solve_burgers`` in float64 in batches of ``batch``."""
    if n < 1:
        raise InputError(f"n: expected a positive number of trajectories, got {n}")
    rng = np.random.default_rng(seed)
    x = grid_1d(config.nx, config.boundary).numpy()
    t = output_times(config.t_end, config.nt).numpy()
    u0 = burgers_initial(n, x, rng)
    f = burgers_forcing(n, x, t, rng, config.n_forces)
    dt = config.dt
    if dt is None:  # one step for the whole dataset, so the batch size does not change the data
        dt = 0.5 * burgers_stable_dt(config.nx, config.nu, float(np.abs(u0).max()), config.boundary)
    u = np.empty((n, config.nt, config.nx))
    for lo in range(0, n, batch):
        u[lo : lo + batch] = solve_burgers(
            torch.from_numpy(u0[lo : lo + batch]),
            config.t_end,
            config.nt,
            nu=config.nu,
            forcing=torch.from_numpy(f[lo : lo + batch]),
            dt=dt,
            boundary=config.boundary,
        ).numpy()
    attrs = {
        "equation": "burgers",
        "nu": config.nu,
        "dt": float(t[1] - t[0]),
        "dx": grid_spacing(config.nx, config.boundary),
        "boundary": config.boundary,
        "seed": seed,
    }
    return PDEData(u=u.astype(np.float32), x=x, t=t, f=f.astype(np.float32), attrs=attrs)


def advection_initial(n: int, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """[n, nx] periodic initial states: sums of 2 random sine modes (module docstring)."""
    u0 = np.zeros((n, x.size))
    for _ in range(2):
        col = (n, 1)
        k = rng.integers(1, 5, col)
        phase = rng.uniform(0, 2 * math.pi, col)
        u0 += rng.uniform(0, 1, col) * np.sin(2 * math.pi * k * x + phase)
    return u0


def generate_advection(
    n: int, *, nx: int = 128, nt: int = 11, t_end: float = 1.0, c: float = 0.4, seed: int = 0
) -> PDEData:
    """``n`` periodic advection trajectories, exact (Fourier shift of the sampled u0)."""
    if n < 1:
        raise InputError(f"n: expected a positive number of trajectories, got {n}")
    rng = np.random.default_rng(seed)
    x = grid_1d(nx).numpy()
    t = output_times(t_end, nt).numpy()
    u = advection_exact(torch.from_numpy(advection_initial(n, x, rng)), c, t_end, nt).numpy()
    attrs = {"equation": "advection", "c": c, "dt": float(t[1] - t[0]), "dx": 1.0 / nx}
    attrs["seed"] = seed
    return PDEData(u=u.astype(np.float32), x=x, t=t, attrs=attrs)
