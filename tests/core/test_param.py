"""Parameterizations: exact round trips, velocity = dx_t/dt, EDM preconditioning (Table 1)."""

from __future__ import annotations

import itertools

import pytest
import torch
from helpers import assert_close

from polydiff.core import paths
from polydiff.core.param import PREDICTIONS, EDMPrecond, convert, from_x0, to_x0

F64 = torch.float64


PATHS = [paths.VPLinear(), paths.VPCosine(), paths.VE(), paths.Flow(), paths.OUVE()]


@pytest.mark.parametrize("path", PATHS, ids=lambda p: type(p).__name__)
def test_round_trips_all_pairs(path):
    g = torch.Generator().manual_seed(0)
    y, pred = torch.randn(6, 4, generator=g, dtype=F64), torch.randn(6, 4, generator=g, dtype=F64)
    t = torch.linspace(path.t_end, min(path.t_start, 0.95), 6, dtype=F64)  # per-sample time
    for a, b in itertools.permutations(PREDICTIONS, 2):
        back = convert(convert(pred, a, b, y, t, path), b, a, y, t, path)
        assert_close(back, pred, rtol=1e-9, atol=1e-9, msg=f"{a} -> {b} -> {a}")


@pytest.mark.parametrize("path", PATHS, ids=lambda p: type(p).__name__)
def test_predictions_agree_with_the_forward_process(path):
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(5, 3, generator=g, dtype=F64), torch.randn(5, 3, generator=g, dtype=F64)
    t = torch.tensor(0.5 * (path.t_end + min(path.t_start, 0.95)), dtype=F64)
    a, s = path.alpha(t), path.sigma(t)
    y = a * x0 + s * eps
    assert_close(from_x0(x0, "eps", y, t, path), eps)
    assert_close(from_x0(x0, "v", y, t, path), a * eps - s * x0)
    assert_close(from_x0(x0, "score", y, t, path), -eps / s)
    # velocity is d/dt of alpha(t) x0 + sigma(t) eps at fixed (x0, eps)
    h = 1e-6
    fd = (
        (path.alpha(t + h) - path.alpha(t - h)) * x0 + (path.sigma(t + h) - path.sigma(t - h)) * eps
    ) / (2 * h)
    assert_close(from_x0(x0, "velocity", y, t, path), fd, rtol=1e-6, atol=1e-7)
    for kind in PREDICTIONS:
        assert_close(to_x0(from_x0(x0, kind, y, t, path), kind, y, t, path), x0)


def test_flow_velocity_is_eps_minus_x0_and_vp_v_inverse():
    f = paths.Flow()
    x0, eps = torch.randn(4, 2, dtype=F64), torch.randn(4, 2, dtype=F64)
    t = torch.tensor(0.3, dtype=F64)
    y = 0.7 * x0 + 0.3 * eps
    assert_close(from_x0(x0, "velocity", y, t, f), eps - x0)
    vp = paths.VPLinear()
    a, s = vp.alpha(t), vp.sigma(t)
    v = torch.randn(4, 2, dtype=F64)
    assert_close(to_x0(v, "v", y, t, vp), a * y - s * v)  # Salimans & Ho, Sec. 4


def test_unknown_prediction_raises():
    with pytest.raises(ValueError, match="unknown prediction"):
        to_x0(torch.zeros(1), "noise", torch.zeros(1), torch.tensor(0.5), paths.VPLinear())


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.seen = None

    def forward(self, x_in, c_noise):
        self.seen = (x_in, c_noise)
        return torch.sin(x_in) + c_noise[:, None]


def test_edm_precond_table1_and_scaled_paths():
    sd = 0.5
    net = _Net().double()
    pre = EDMPrecond(net, sigma_data=sd)
    x, sigma = torch.randn(3, 2, dtype=F64), torch.tensor([0.1, 1.0, 10.0], dtype=F64)
    out = pre(x, sigma)
    c_skip = sd**2 / (sigma**2 + sd**2)
    c_out = sigma * sd / (sigma**2 + sd**2).sqrt()
    c_in = 1 / (sigma**2 + sd**2).sqrt()
    expected = c_skip[:, None] * x + c_out[:, None] * (
        torch.sin(c_in[:, None] * x) + (sigma.log() / 4)[:, None]
    )
    assert_close(out, expected)
    # on VP, the same network sees x/alpha at sigma/alpha
    vp = paths.VPLinear()
    t = torch.tensor([0.2, 0.5, 0.9], dtype=F64)
    a, s = vp.alpha(t), vp.sigma(t)
    assert_close(EDMPrecond(net, sd, path=vp)(x, t), pre(x / a[:, None], s / a))
