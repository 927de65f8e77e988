"""Trajectory metrics on errors whose values are known in closed form."""

import math

import pytest
import torch

from polydiff.core.errors import InputError
from polydiff.pde.metrics import (
    max_gradient,
    mse,
    nrmse,
    relative_l2,
    relative_l2_per_sample,
    spectral_errors,
    trajectory_metrics,
)


def test_errors_of_a_known_perturbation():
    x = torch.arange(64, dtype=torch.float64) / 64
    true = torch.sin(2 * math.pi * x).expand(3, 5, 64).clone()
    pred = true.clone()
    pred[:, 1:] += 0.1 * torch.cos(2 * math.pi * 7 * x)  # error amplitude 0.1 at k = 7, t >= 1
    assert math.isclose(mse(pred, true, from_time=1), 0.005, rel_tol=1e-9)  # 0.1^2 / 2
    assert math.isclose(mse(pred, true), 0.004, rel_tol=1e-9)  # one of 5 times is exact
    # ||0.1 cos|| / ||sin|| = 0.1 on every time from 1 on
    assert math.isclose(relative_l2(pred, true, 1), 0.1, rel_tol=1e-9)
    assert math.isclose(nrmse(pred, true, 1), 0.1, rel_tol=1e-9)
    bands = spectral_errors(pred, true, 1)
    assert bands["low"] < 1e-12 and bands["high"] < 1e-12
    assert math.isclose(bands["mid"], 0.05, rel_tol=1e-9)  # |F|/nx = 0.1 / 2 at k = 7
    # Parseval: each k > 0 counted twice gives the MSE
    assert math.isclose(2 * bands["mid"] ** 2, mse(pred, true, 1), rel_tol=1e-9)
    metrics = trajectory_metrics(pred, true)
    assert math.isclose(metrics["relative_l2_final"], 0.1, rel_tol=1e-9)
    assert trajectory_metrics(true, true)["mse"] == 0.0


def test_mismatched_shapes_are_refused():
    with pytest.raises(InputError, match=r"^pred: expected the shape of the truth"):
        mse(torch.zeros(2, 3, 8), torch.zeros(2, 3, 4))


def test_per_sample_errors_steepest_slope_and_bootstrap_interval():
    true = torch.ones(3, 4, 8)
    pred = true * torch.tensor([1.0, 1.5, 3.0])[:, None, None]
    per_sample = relative_l2_per_sample(pred, true, from_time=1)
    assert torch.allclose(per_sample, torch.tensor([0.0, 0.5, 2.0], dtype=torch.float64))
    assert relative_l2(pred, true, 1) == pytest.approx(2.5 / 3)
    ramp = torch.zeros(2, 3, 8)
    ramp[1, 2] = torch.arange(8) * 0.3  # slope 0.3 per node at the last time
    ramp[0, 0] = torch.arange(8) * 9.0  # steep, but at t = 0, which is skipped
    assert torch.allclose(max_gradient(ramp, dx=0.1), torch.tensor([0.0, 3.0], dtype=torch.float64))
