"""Time grids t_0 = t_start > t_1 > ... > t_n = t_end (float64, length n + 1).

All grids are built once before the loop (this is the only place where values are checked); the
loop itself never compares tensors. What happens at the end is an explicit policy of the driver
(``sample(..., denoise_final=True)`` returns the x0 prediction at t_end) and of the solvers
(``lower_order_final``), both decided with Python ints.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from polydiff.core.paths import AffinePath, as_time

GRIDS = ("uniform", "logsnr", "karras", "quadratic", "flow_shift")


def _bounds(path: AffinePath | None, t_start: float | None, t_end: float | None):
    if t_start is None or t_end is None:
        if path is None:
            raise ValueError("t_start and t_end are required when no path is given")
        t_start = path.t_start if t_start is None else t_start
        t_end = path.t_end if t_end is None else t_end
    if not t_start > t_end >= 0:
        raise ValueError(f"need t_start > t_end >= 0, got t_start={t_start}, t_end={t_end}")
    return float(t_start), float(t_end)


def _check_n(n: int) -> None:
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"the number of steps must be a positive int, got {n!r}")


def uniform(n: int, path=None, t_start=None, t_end=None) -> Tensor:
    """Uniform in t."""
    _check_n(n)
    t_start, t_end = _bounds(path, t_start, t_end)
    return torch.linspace(t_start, t_end, n + 1, dtype=torch.float64)


def logsnr(n: int, path: AffinePath, t_start=None, t_end=None) -> Tensor:
    """Uniform in lambda = log(alpha/sigma) (Lu et al. 2022, "DPM-Solver", logSNR step size)."""
    _check_n(n)
    t_start, t_end = _bounds(path, t_start, t_end)
    lam = path.log_snr(torch.tensor([t_start, t_end], dtype=torch.float64))
    if not torch.isfinite(lam).all():
        raise ValueError(
            f"logsnr grid: lambda is infinite at t_start={t_start} or t_end={t_end}; "
            "choose interior times"
        )
    ts = path.t_of_log_snr(torch.linspace(float(lam[0]), float(lam[1]), n + 1, dtype=torch.float64))
    ts[0], ts[-1] = t_start, t_end  # exact endpoints despite the round trip
    return ts


def karras(n: int, path: AffinePath, t_start=None, t_end=None, rho: float = 7.0) -> Tensor:
    """EDM's grid (Karras et al. 2022, Eq. 5) in the scaled noise level sigma/alpha = exp(-lambda):
    sigma_i = (s_max^(1/rho) + i/n (s_min^(1/rho) - s_max^(1/rho)))^rho."""
    _check_n(n)
    t_start, t_end = _bounds(path, t_start, t_end)
    lam = path.log_snr(torch.tensor([t_start, t_end], dtype=torch.float64))
    s_max, s_min = torch.exp(-lam[0]), torch.exp(-lam[1])
    ramp = torch.linspace(0, 1, n + 1, dtype=torch.float64)
    sig = (s_max ** (1 / rho) + ramp * (s_min ** (1 / rho) - s_max ** (1 / rho))) ** rho
    ts = path.t_of_log_snr(-torch.log(sig))
    ts[0], ts[-1] = t_start, t_end
    return ts


def quadratic(n: int, path=None, t_start=None, t_end=None) -> Tensor:
    """Uniform in sqrt(t) (DPM-Solver's "time_quadratic" skip type)."""
    _check_n(n)
    t_start, t_end = _bounds(path, t_start, t_end)
    return torch.linspace(math.sqrt(t_start), math.sqrt(t_end), n + 1, dtype=torch.float64) ** 2


def flow_shift(n: int, path=None, t_start=None, t_end=None, shift: float = 3.0) -> Tensor:
    """Shifted uniform grid t' = shift t / (1 + (shift - 1) t) (Esser et al. 2024, "Scaling
    Rectified Flow Transformers", timestep shifting); shift > 1 spends more steps at high noise."""
    if shift <= 0:
        raise ValueError(f"flow shift must be > 0, got {shift}")
    t = uniform(n, path, t_start, t_end)
    return shift * t / (1 + (shift - 1) * t)


def custom(ts, *, allow_paused: bool = False) -> Tensor:
    """Validate a user grid: 1-D (shared) or [n+1, B(, L)] (per sample), strictly decreasing.

    ``allow_paused`` lets a per-sample / per-position grid hold some times constant over a step
    (block-wise decoding: a finished or not yet started block waits), for solvers that leave such
    positions unchanged; every step must still move some time.
    """
    ts = as_time(torch.as_tensor(ts))
    if ts.ndim == 0 or ts.shape[0] < 2:
        raise ValueError(
            f"a time grid needs at least 2 times along dim 0, got shape {tuple(ts.shape)}"
        )
    if not torch.isfinite(ts).all():
        raise ValueError("the time grid contains non-finite values")
    if allow_paused and ts.ndim > 1:
        moved = (ts[1:] < ts[:-1]).flatten(1).any(1)
        if not ((ts[1:] <= ts[:-1]).all() and moved.all()):
            raise ValueError(
                "the time grid must be non-increasing along dim 0 (t_start -> t_end), and every "
                "step must decrease some time"
            )
    elif not (ts[1:] < ts[:-1]).all():
        raise ValueError("the time grid must be strictly decreasing along dim 0 (t_start -> t_end)")
    return ts


def make_grid(
    kind: str | Tensor, n: int | None, path: AffinePath, *, allow_paused: bool = False, **kwargs
) -> Tensor:
    """A grid by name (uniform, logsnr, karras, quadratic, flow_shift) or a validated tensor."""
    if not isinstance(kind, str):
        return custom(kind, allow_paused=allow_paused)
    builders = {
        "uniform": uniform,
        "logsnr": logsnr,
        "karras": karras,
        "quadratic": quadratic,
        "flow_shift": flow_shift,
    }
    if kind not in builders:
        raise ValueError(f"unknown grid {kind!r}; expected one of {GRIDS} or a tensor")
    if n is None:
        raise ValueError(f"grid {kind!r} needs a number of steps")
    return builders[kind](n, path, **kwargs)


__all__ = ["GRIDS", "custom", "flow_shift", "karras", "logsnr", "make_grid", "quadratic", "uniform"]
