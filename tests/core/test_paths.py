"""Paths: closed forms, derivatives, inverse logSNR, SDE coefficients, posteriors, golden values."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import assert_close

from polydiff.core import paths

F64 = torch.float64


ALL_PATHS = [
    paths.VPLinear(),
    paths.VPCosine(),
    paths.VE(),
    paths.Flow(),
    paths.OUVE(),
    paths.MeanReverting(),
]


def _times(path, n=7):
    lo, hi = path.t_end, path.t_start
    if isinstance(path, paths.Flow):
        hi = 0.99
    return torch.linspace(lo, hi, n, dtype=F64)


def test_ouve_golden_sigma_and_g():
    p = paths.OUVE(theta=1.5, sigma_min=0.05, sigma_max=0.5)
    assert float(p.sigma(torch.tensor(1.0, dtype=F64))) == pytest.approx(0.389, abs=5e-4)
    t = _times(p)
    # the variance ODE d sigma^2/dt = -2 theta sigma^2 + g^2 with SGMSE's g(t)
    assert_close(p.diffusion2(t), p.g(t) ** 2, rtol=1e-10, atol=0)


def test_mean_reverting_diffusion_is_2_lam2_theta():
    p = paths.MeanReverting(lam=0.3, theta_min=0.2, theta_max=4.0)
    t = _times(p)
    theta = 0.2 + (4.0 - 0.2) * t
    assert_close(p.diffusion2(t), 2 * 0.3**2 * theta, rtol=1e-10, atol=0)
    assert_close(p.drift(t), -theta, rtol=1e-10, atol=0)


@pytest.mark.parametrize("path", ALL_PATHS, ids=lambda p: type(p).__name__)
def test_derivatives_match_finite_differences(path):
    t, eps = _times(path), 1e-6
    for f, df in (
        (path.alpha, path.d_alpha),
        (path.sigma, path.d_sigma),
        (path.log_snr, path.d_log_snr),
    ):
        fd = (f(t + eps) - f(t - eps)) / (2 * eps)
        assert_close(df(t), fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("path", ALL_PATHS, ids=lambda p: type(p).__name__)
def test_log_snr_inverse_round_trip(path):
    t = _times(path)
    lam = path.log_snr(t)
    assert (lam[1:] < lam[:-1]).all(), "lambda must decrease in t"
    assert_close(path.t_of_log_snr(lam), t, rtol=1e-9, atol=1e-12)
    assert_close(lam, torch.log(path.alpha(t) / path.sigma(t)), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("path", ALL_PATHS, ids=lambda p: type(p).__name__)
def test_posterior_matches_joint_gaussian_conditioning(path):
    g = torch.Generator().manual_seed(0)
    x0, x_t = torch.randn(5, 3, generator=g, dtype=F64), torch.randn(5, 3, generator=g, dtype=F64)
    mu = torch.randn(5, 3, generator=g, dtype=F64) if path.mean_reverting else None
    ts = _times(path)
    t, s = ts[4], ts[2]
    mean, std = path.posterior(x_t, x0, t, s, mu=mu)
    # x_s, x_t | x0 jointly Gaussian: Cov(x_s, x_t) = alpha_t/alpha_s sigma_s^2
    a_t, s_t, a_s, s_s = path.alpha(t), path.sigma(t), path.alpha(s), path.sigma(s)
    m0 = 0 if mu is None else mu
    mean_s, mean_t = a_s * x0 + (1 - a_s) * m0, a_t * x0 + (1 - a_t) * m0
    cov = a_t / a_s * s_s**2
    assert_close(mean, mean_s + cov / s_t**2 * (x_t - mean_t), rtol=1e-10, atol=1e-12)
    var = s_s**2 - cov**2 / s_t**2
    assert_close(std, torch.sqrt(var).expand_as(std), rtol=1e-8, atol=1e-12)


def test_marginal_and_prior():
    p = paths.OUVE()
    x0, mu = torch.ones(4, 2, dtype=F64), torch.full((4, 2), 3.0, dtype=F64)
    z = torch.zeros_like(x0)
    t = torch.tensor(0.5, dtype=F64)
    a = float(p.alpha(t))
    assert_close(p.marginal(x0, t, z, mu=mu), a * x0 + (1 - a) * mu)
    g = torch.Generator().manual_seed(0)
    xT = p.prior_sample((20000, 1), mu=torch.full((20000, 1), 3.0), generator=g)
    assert xT.mean().item() == pytest.approx(3.0, abs=0.02)
    assert xT.std().item() == pytest.approx(0.389, abs=0.01)
    assert paths.VPLinear().prior_sample((3, 2)).shape == (3, 2)


def test_vp_and_flow_identities():
    t = torch.linspace(0.01, 0.99, 9, dtype=F64)
    for p in (paths.VPLinear(), paths.VPCosine()):
        assert_close(p.alpha(t) ** 2 + p.sigma(t) ** 2, torch.ones_like(t))
    f = paths.Flow()
    assert_close(f.t_of_log_snr(f.log_snr(t)), t)
    assert math.isinf(float(f.log_snr(torch.tensor(1.0, dtype=F64))))


def test_bad_arguments():
    with pytest.raises(ValueError, match="beta_min"):
        paths.VPLinear(beta_min=5, beta_max=1)
    with pytest.raises(ValueError, match="sigma_min"):
        paths.VE(sigma_min=0)
    with pytest.raises(ValueError, match="theta"):
        paths.OUVE(theta=-1)
