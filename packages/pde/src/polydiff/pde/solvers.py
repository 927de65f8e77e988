"""Numerical solvers for 1D PDEs on [0, 1], vectorised over a batch in torch (differentiable).

Grids (``grid_1d``): ``"periodic"`` uses x_i = i / nx, i = 0..nx-1; ``"dirichlet"`` (u = 0 at
x = 0 and x = 1) stores the nx interior nodes x_i = i / (nx + 1), i = 1..nx, the grid of
DiffPhyCon's Burgers data. Every solver returns the trajectory at ``nt`` equally spaced output
times t_k = k t_end / (nt - 1), the initial state first: shape [B, nt, nx].

Internal steps: each output interval is split into equal substeps no longer than ``dt``; the
stability conditions are checked on that step and a violation raises ``InputError`` naming ``dt``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from polydiff.core.errors import InputError, check_number

BOUNDARIES = ("periodic", "dirichlet")
ADVECTION_SCHEMES = ("upwind", "lax_wendroff")

Forcing = Tensor | Callable[[float], Tensor]


def grid_1d(nx: int, boundary: str = "periodic", *, dtype=torch.float64) -> Tensor:
    """The stored nodes on [0, 1] (see the module docstring)."""
    _check_boundary(boundary)
    if boundary == "periodic":
        return torch.arange(nx, dtype=dtype) / nx
    return torch.arange(1, nx + 1, dtype=dtype) / (nx + 1)


def grid_spacing(nx: int, boundary: str) -> float:
    _check_boundary(boundary)
    return 1.0 / nx if boundary == "periodic" else 1.0 / (nx + 1)


def resample_grid(u: Tensor, nx: int, boundary: str = "dirichlet") -> Tensor:
    """Fields [..., n] on ``grid_1d(n, boundary)`` linearly interpolated onto ``grid_1d(nx,
    boundary)``: the piecewise-linear function through the nodes and the boundary values (0 at
    x = 0 and 1 for "dirichlet"; the wrap-around for "periodic")."""
    u = torch.as_tensor(u)
    n = u.shape[-1]
    src = grid_1d(n, boundary, dtype=torch.float64)
    if boundary == "periodic":
        ext = torch.cat([u, u[..., :1]], -1)
        src = torch.cat([src, src.new_ones(1)])
    else:
        zero = torch.zeros_like(u[..., :1])
        ext = torch.cat([zero, u, zero], -1)
        src = torch.cat([src.new_zeros(1), src, src.new_ones(1)])
    dst = grid_1d(nx, boundary, dtype=torch.float64)
    right = torch.searchsorted(src, dst, right=True).clamp(1, len(src) - 1)
    weight = ((dst - src[right - 1]) / (src[right] - src[right - 1])).to(u.dtype)
    return ext[..., right - 1] * (1 - weight) + ext[..., right] * weight


def output_times(t_end: float, nt: int, *, dtype=torch.float64) -> Tensor:
    return torch.linspace(0.0, t_end, nt, dtype=dtype)


def _check_boundary(boundary: str) -> None:
    if boundary not in BOUNDARIES:
        raise InputError(f"boundary: expected one of {BOUNDARIES}, got {boundary!r}")


def _check_times(t_end: float, nt: int) -> None:
    check_number("t_end", t_end, positive=True)
    if isinstance(nt, bool) or not isinstance(nt, int) or nt < 2:
        raise InputError(f"nt: expected an integer >= 2, got {nt!r}")


def _check_state(u0: Tensor) -> Tensor:
    u0 = torch.as_tensor(u0)
    if u0.ndim != 2:
        raise InputError(f"u0: expected shape [batch, nx], got {tuple(u0.shape)}")
    if not torch.isfinite(u0).all():
        raise InputError("u0: contains NaN or infinite values")
    return u0


def _substeps(interval: float, dt: float) -> tuple[int, float]:
    """The number of equal substeps of at most ``dt`` in one output interval, and their length."""
    check_number("dt", dt, positive=True)
    n = max(1, math.ceil(interval / dt - 1e-9))
    return n, interval / n


def _neighbours(u: Tensor, boundary: str) -> tuple[Tensor, Tensor]:
    """(u_{i-1}, u_{i+1}) with the boundary condition applied."""
    if boundary == "periodic":
        return torch.roll(u, 1, -1), torch.roll(u, -1, -1)
    zero = torch.zeros_like(u[..., :1])
    return torch.cat([zero, u[..., :-1]], -1), torch.cat([u[..., 1:], zero], -1)


# --------------------------------------------------------------------------------------------
# Linear advection u_t + c u_x = 0 (periodic)


def advection_exact(u0: Tensor, c: float, t_end: float, nt: int) -> Tensor:
    """The exact solution u(t, x) = u0(x - c t) of periodic advection, by a Fourier phase shift.

    Exact for the band-limited (trigonometric) interpolant of the samples ``u0`` [B, nx], so no
    interpolation error is added when the samples resolve u0."""
    u0 = _check_state(u0)
    check_number("c", c)
    _check_times(t_end, nt)
    nx = u0.shape[-1]
    k = torch.fft.rfftfreq(nx, d=1.0 / nx).to(u0.dtype)  # integer wavenumbers
    t = output_times(t_end, nt, dtype=u0.dtype)
    phase = torch.exp(-2j * math.pi * k[None, :] * c * t[:, None])  # [nt, nk]
    if nx % 2 == 0:  # the Nyquist mode of a real signal must stay real: shift it as a cosine
        phase[:, -1] = torch.cos(math.pi * nx * c * t).to(phase.dtype)
    spectrum = torch.fft.rfft(u0, dim=-1)[:, None, :] * phase[None]
    return torch.fft.irfft(spectrum, n=nx, dim=-1)


def solve_advection(
    u0: Tensor,
    c: float,
    t_end: float,
    nt: int,
    *,
    dt: float,
    scheme: str = "lax_wendroff",
) -> Tensor:
    """Periodic linear advection by an explicit finite-difference scheme.

    ``"upwind"``: first-order upwind differences, u_i <- u_i - C (u_i - u_{i-1}) for c > 0
    (mirrored for c < 0). ``"lax_wendroff"``: second order in space and time,
    u_i <- u_i - C/2 (u_{i+1} - u_{i-1}) + C^2/2 (u_{i+1} - 2 u_i + u_{i-1}) (Lax & Wendroff
    1960). C = c dt / dx is the Courant number; both are stable for |C| <= 1 (CFL condition).
    """
    u0 = _check_state(u0)
    check_number("c", c)
    _check_times(t_end, nt)
    if scheme not in ADVECTION_SCHEMES:
        raise InputError(f"scheme: expected one of {ADVECTION_SCHEMES}, got {scheme!r}")
    nx = u0.shape[-1]
    n_sub, h = _substeps(t_end / (nt - 1), dt)
    courant = c * h / grid_spacing(nx, "periodic")
    if abs(courant) > 1.0:
        raise InputError(
            f"dt: CFL condition violated, |c| dt / dx = {abs(courant):.3g} > 1 "
            f"(c={c}, nx={nx}); use dt <= {grid_spacing(nx, 'periodic') / abs(c):.3g}"
        )
    u, out = u0, [u0]
    for _ in range(nt - 1):
        for _ in range(n_sub):
            left, right = _neighbours(u, "periodic")
            if scheme == "upwind":
                u = u - courant * (u - left) if c >= 0 else u - courant * (right - u)
            else:
                u = u - 0.5 * courant * (right - left) + 0.5 * courant**2 * (right - 2 * u + left)
        out.append(u)
    return torch.stack(out, 1)


# --------------------------------------------------------------------------------------------
# Viscous Burgers u_t + (u^2 / 2)_x = nu u_xx + f(t, x)


def burgers_stable_dt(nx: int, nu: float, u_max: float, boundary: str = "dirichlet") -> float:
    """The largest step the forward-Euler central scheme allows (see ``solve_burgers``)."""
    dx = grid_spacing(nx, boundary)
    return min(0.5 * dx**2 / nu, 2.0 * nu / u_max**2 if u_max > 0 else math.inf)


def _check_burgers_step(h: float, nx: int, nu: float, u_max: float, boundary: str) -> None:
    dx = grid_spacing(nx, boundary)
    diffusion_number = nu * h / dx**2
    if diffusion_number > 0.5:
        raise InputError(
            f"dt: diffusion number nu dt / dx^2 = {diffusion_number:.3g} > 0.5 "
            f"(nu={nu}, nx={nx}); use dt <= {0.5 * dx**2 / nu:.3g}"
        )
    if u_max**2 * h / nu > 2.0:
        raise InputError(
            f"dt: forward Euler with central advection needs max|u|^2 dt / nu <= 2, got "
            f"{u_max**2 * h / nu:.3g} (max|u|={u_max:.3g}, nu={nu}); "
            f"use dt <= {2 * nu / u_max**2:.3g}"
        )


def _forcing_at(forcing: Forcing | None, t: float, interval: float, u: Tensor) -> Tensor | float:
    """f(t) as [B, nx]: a callable is evaluated; an array on the output times is interpolated
    linearly in time."""
    if forcing is None:
        return 0.0
    if callable(forcing):
        return forcing(t)
    s = t / interval
    k = min(int(s), forcing.shape[1] - 2)
    w = s - k
    return (1 - w) * forcing[:, k] + w * forcing[:, k + 1]


def _check_forcing(forcing: Forcing | None, u0: Tensor, nt: int) -> Forcing | None:
    if forcing is None or callable(forcing):
        return forcing
    forcing = torch.as_tensor(forcing, dtype=u0.dtype, device=u0.device)
    expected = (u0.shape[0], nt, u0.shape[1])
    if tuple(forcing.shape) != expected:
        raise InputError(
            f"forcing: expected shape [batch, nt, nx] = {list(expected)}, got {list(forcing.shape)}"
        )
    if not torch.isfinite(forcing).all():
        raise InputError("forcing: contains NaN or infinite values")
    return forcing


def solve_burgers(
    u0: Tensor,
    t_end: float,
    nt: int,
    *,
    nu: float = 0.01,
    forcing: Forcing | None = None,
    dt: float | None = None,
    boundary: str = "dirichlet",
    safety: float = 0.5,
) -> Tensor:
    """Viscous Burgers u_t + u u_x = nu u_xx + f(t, x) on [0, 1], the DiffPhyCon / WDNO control
    setting (Wei et al. 2024, "DiffPhyCon"; Hu et al. 2025, "Wavelet Diffusion Neural Operator").

    Scheme: forward Euler in time; conservative central differences
    (u_{i+1}^2 - u_{i-1}^2) / (4 dx) for the flux and (u_{i+1} - 2 u_i + u_{i-1}) / dx^2 for the
    diffusion, so first order in time and second in space. Stable when the diffusion number
    d = nu dt / dx^2 <= 1/2 and the Courant number C = max|u| dt / dx has C^2 <= 2 d, i.e.
    max|u|^2 dt / nu <= 2 (von Neumann analysis of FTCS); together these imply the CFL condition
    C <= 1. Checked on the initial state and again on the output states (the forcing can raise
    max|u|).

    ``forcing``: None, an array [B, nt, nx] on the output times (interpolated linearly in time, so
    the stored array defines the trajectory), or a callable t -> [B, nx]. ``dt`` (the largest
    internal step) defaults to ``safety`` times the stable step for max|u0|.
    """
    u0 = _check_state(u0)
    check_number("nu", nu, positive=True)
    _check_times(t_end, nt)
    _check_boundary(boundary)
    forcing = _check_forcing(forcing, u0, nt)
    nx = u0.shape[-1]
    dx = grid_spacing(nx, boundary)
    u_max = float(u0.abs().max())
    if dt is None:
        dt = safety * burgers_stable_dt(nx, nu, u_max, boundary)
    interval = t_end / (nt - 1)
    n_sub, h = _substeps(interval, dt)
    _check_burgers_step(h, nx, nu, u_max, boundary)
    u, out, t = u0, [u0], 0.0
    for k in range(nt - 1):
        for j in range(n_sub):
            t = (k + j / n_sub) * interval
            left, right = _neighbours(u, boundary)
            flux = (right**2 - left**2) / (4 * dx)
            diffusion = nu * (right - 2 * u + left) / dx**2
            u = u + h * (diffusion - flux + _forcing_at(forcing, t, interval, u))
        out.append(u)
    traj = torch.stack(out, 1)
    if not torch.isfinite(traj).all():
        raise InputError("dt: the solution became non-finite; use a smaller dt")
    # the forcing can raise max|u| above max|u0|: check the condition again on the output times
    _check_burgers_step(h, nx, nu, float(traj.detach().abs().max()), boundary)
    return traj


def burgers_cole_hopf(
    x: Tensor, t: Tensor, nu: float, a: float, modes: dict[int, float], boundary: str
) -> Tensor:
    """An exact unforced viscous Burgers solution by the Cole-Hopf transform u = -2 nu phi_x / phi
    (Cole 1951; Hopf 1950), with the heat-equation solution
    phi = a + sum_k b_k exp(-nu (w k)^2 t) cos(w k x), w = pi (dirichlet: phi_x = 0 so u = 0 at
    both ends) or 2 pi (periodic). Needs a > sum |b_k| so that phi > 0. Returns [nt, nx]."""
    w = math.pi if boundary == "dirichlet" else 2 * math.pi
    t, x = t[:, None], x[None, :]
    phi, phi_x = torch.full_like(t * x, a), torch.zeros_like(t * x)
    for k, b in modes.items():
        decay = b * torch.exp(-nu * (w * k) ** 2 * t)
        phi = phi + decay * torch.cos(w * k * x)
        phi_x = phi_x - decay * w * k * torch.sin(w * k * x)
    return -2 * nu * phi_x / phi


__all__ = [
    "ADVECTION_SCHEMES",
    "BOUNDARIES",
    "advection_exact",
    "burgers_cole_hopf",
    "burgers_stable_dt",
    "grid_1d",
    "grid_spacing",
    "output_times",
    "resample_grid",
    "solve_advection",
    "solve_burgers",
]
