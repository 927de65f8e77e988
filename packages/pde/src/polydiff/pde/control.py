"""Control of forced Burgers: the objective, its value under the true solver, and the classical
baseline that optimises the forcing by gradient descent through the differentiable solver.

Objective (the DiffPhyCon / WDNO control task, Wei et al. 2024; Hu et al. 2025): reach a target
final state u* from u0 with little control energy,

    J(u, f) = mean_x (u(T, x) - u*(x))^2 + energy_weight * mean_{t, x} f(t, x)^2.

``evaluate_control`` computes J with u from ``solve_burgers`` under the proposed f (how any
control method is judged); ``optimize_control`` minimises it directly: backpropagation through
the explicit solver is the discrete adjoint method.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor

from polydiff.core.errors import InputError, check_number
from polydiff.pde.solvers import burgers_stable_dt, solve_burgers


def control_objective(
    u_final: Tensor, target: Tensor, f: Tensor, energy_weight: float = 0.0
) -> Tensor:
    """J per sample [B] from the final states u_final [B, nx], targets [B, nx], forcing
    [B, nt, nx] (see the module docstring)."""
    if u_final.shape != target.shape or f.ndim != 3 or f.shape[-1] != u_final.shape[-1]:
        raise InputError(
            f"target: expected u_final and target [B, nx] and f [B, nt, nx], got "
            f"{tuple(u_final.shape)}, {tuple(target.shape)}, {tuple(f.shape)}"
        )
    tracking = (u_final - target).square().mean(-1)
    return tracking + energy_weight * f.square().mean((-2, -1))


@dataclass(frozen=True)
class ControlProblem:
    """The physics and the objective of a control task (``dt=None``: see each function)."""

    t_end: float = 1.0
    nu: float = 0.01
    energy_weight: float = 0.0
    dt: float | None = None
    boundary: str = "dirichlet"

    def solve(self, u0: Tensor, f: Tensor) -> Tensor:
        """The trajectory [B, nt, nx] from u0 under f by ``solve_burgers``."""
        options = {"nu": self.nu, "dt": self.dt, "boundary": self.boundary}
        return solve_burgers(u0, self.t_end, f.shape[1], forcing=f, **options)


def evaluate_control(u0: Tensor, f: Tensor, target: Tensor, problem=ControlProblem()) -> Tensor:
    """J [B] of the forcing f [B, nt, nx] with the trajectory from the true solver."""
    u = problem.solve(u0, f)
    return control_objective(u[:, -1], target.to(u.dtype), f.to(u.dtype), problem.energy_weight)


def optimize_control(
    u0: Tensor, target: Tensor, nt: int, problem=ControlProblem(), *, steps=100, lr=0.1, f_init=None
) -> tuple[Tensor, list[float]]:
    """The gradient baseline: Adam on f [B, nt, nx] (from ``f_init`` or zero) minimising
    ``evaluate_control`` (mean over the batch). The solver step defaults to half the stable step
    for twice the largest of |u0| and |target|, fixed for every iteration. Returns the forcing
    and the history of J before each step."""
    check_number("steps", steps, minimum=1)
    check_number("lr", lr, positive=True)
    u0 = torch.as_tensor(u0).double()
    dt = problem.dt
    if dt is None:  # one step for every iteration, with room for growth
        u_max = 2 * max(float(u0.abs().max()), float(torch.as_tensor(target).abs().max()))
        dt = 0.5 * burgers_stable_dt(u0.shape[-1], problem.nu, u_max, problem.boundary)
    fixed = dataclasses.replace(problem, dt=dt)
    shape = (u0.shape[0], nt, u0.shape[-1])
    f = torch.zeros(shape, dtype=u0.dtype) if f_init is None else f_init.detach().double().clone()
    f.requires_grad_(True)
    opt = torch.optim.Adam([f], lr=lr)
    history = []
    for _ in range(steps):
        cost = evaluate_control(u0, f, target, fixed).mean()
        opt.zero_grad()
        cost.backward()
        opt.step()
        history.append(float(cost.detach()))
    return f.detach(), history


__all__ = ["ControlProblem", "control_objective", "evaluate_control", "optimize_control"]
