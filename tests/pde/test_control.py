"""The control objective, its evaluation by the true solver and the gradient baseline."""

import math

import pytest
import torch
from helpers import assert_close

from polydiff.core.errors import InputError
from polydiff.pde.control import (
    ControlProblem,
    control_objective,
    evaluate_control,
    optimize_control,
)
from polydiff.pde.data import BurgersConfig, generate_burgers


def test_objective_of_known_values():
    u_final, target = torch.ones(2, 4), torch.zeros(2, 4)
    f = torch.full((2, 3, 4), 2.0)
    assert_close(control_objective(u_final, target, f), torch.ones(2))
    assert_close(control_objective(u_final, target, f, energy_weight=0.5), torch.full((2,), 3.0))
    with pytest.raises(InputError, match=r"^target: expected"):
        control_objective(u_final, torch.zeros(2, 5), f)


def test_the_true_forcing_reaches_its_own_final_state():
    data = generate_burgers(3, BurgersConfig(nx=16, nt=5, t_end=0.5), seed=0)
    u, f = torch.from_numpy(data.u).double(), torch.from_numpy(data.f).double()
    cost = evaluate_control(u[:, 0], f, u[:, -1], ControlProblem(t_end=0.5))
    assert float(cost.max()) < 1e-10
    assert (
        float(
            evaluate_control(
                u[:, 0], torch.zeros_like(f), u[:, -1], ControlProblem(t_end=0.5)
            ).min()
        )
        > 0
    )


def test_gradient_baseline_lowers_the_objective():
    x = torch.arange(1, 17, dtype=torch.float64) / 17
    u0 = 0.5 * torch.sin(math.pi * x)[None]
    target = 0.5 * torch.sin(2 * math.pi * x)[None]  # a shape the free evolution cannot reach
    _, history = optimize_control(u0, target, 4, ControlProblem(t_end=0.5), steps=12, lr=0.3)
    assert history[-1] < 0.2 * history[0], history
