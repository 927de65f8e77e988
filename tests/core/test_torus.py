"""The torus: wrapped-normal mixture with exact diffused score, von Mises draws, samplers that
stay on the torus (predictor-corrector and probability-flow ODE) against the exact target."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.special import i0e, i1e

from polydiff.core import NoiseSource, sample
from polydiff.core.paths import VE
from polydiff.core.torus import (
    WrappedNormalMixture,
    circular_moment,
    sample_von_mises,
    wrap,
    wrap_hook,
)


@pytest.fixture(scope="module")
def target():
    means = torch.tensor([[0.1, 0.5], [0.6, 0.9], [0.95, 0.2]])
    return WrappedNormalMixture(
        means, torch.tensor([0.05, 0.08, 0.1]), torch.tensor([0.3, 0.3, 0.4])
    )


def bin_probs(target, bins=10, fine=400):
    """Exact per-dimension marginal bin probabilities [d, bins] by midpoint quadrature."""
    g = (torch.arange(fine, dtype=torch.float64) + 0.5) / fine
    X = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    p = target.log_prob(X).exp().reshape(fine, fine) / fine**2
    marg = torch.stack([p.sum(1), p.sum(0)])  # [2, fine]
    return marg.reshape(2, bins, fine // bins).sum(-1)


def histogram_tv(x, exact, bins=10):
    counts = torch.stack([torch.histc(x[:, d].float(), bins, 0, 1) for d in range(2)]).double()
    return (0.5 * (counts / x.shape[0] - exact).abs().sum(-1)).max().item()


def test_wrap_and_hook():
    x = torch.tensor([-0.25, 0.0, 1.0, 2.75])
    assert torch.allclose(wrap(x), torch.tensor([0.75, 0.0, 0.0, 0.75]))
    angles = wrap(torch.tensor([math.pi, -math.pi - 0.5]), -math.pi, 2 * math.pi)
    assert torch.allclose(angles, torch.tensor([-math.pi, math.pi - 0.5]))
    assert torch.equal(wrap_hook()(x, torch.tensor(0.1), None), wrap(x))


@pytest.mark.parametrize("sigma", [0.0, 0.03, 0.2, 0.5])
def test_score_is_gradient_of_log_density(target, sigma):
    x = torch.rand(64, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    xr = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(target.log_prob(xr, sigma).sum(), xr)
    assert torch.allclose(target.score(x, sigma), grad, atol=1e-9)
    # periodic: the same score one period away
    assert torch.allclose(target.score(x + torch.tensor([1.0, -2.0]), sigma), grad, atol=1e-9)


def test_density_normalizes_and_per_sample_sigma(target):
    g = (torch.arange(300, dtype=torch.float64) + 0.5) / 300
    X = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    for sigma in (0.0, 0.1, 0.4):
        assert target.log_prob(X, sigma).exp().mean().item() == pytest.approx(1.0, abs=1e-6)
    x = torch.rand(3, 2, dtype=torch.float64)
    sig = torch.tensor([0.0, 0.1, 0.4], dtype=torch.float64)
    rows = torch.stack([target.score(x[i : i + 1], sig[i])[0] for i in range(3)])
    assert torch.allclose(target.score(x, sig), rows, atol=1e-12)


def test_sample_and_exact_circular_moments(target):
    x = target.sample(40000, torch.Generator().manual_seed(0))
    assert ((x >= 0) & (x < 1)).all()
    for h in (1, 2):
        emp = torch.exp(2j * math.pi * h * x).mean(0)
        assert (emp - target.circular_moment(h)).abs().max().item() < 0.015


@pytest.mark.parametrize("kappa", [0.0, 0.5, 4.0, 300.0])
def test_von_mises_moments(kappa):
    y = sample_von_mises(
        torch.full((40000,), 2.0),
        torch.tensor(kappa),
        NoiseSource(torch.Generator().manual_seed(0)),
    )
    assert ((y >= -math.pi) & (y < math.pi)).all()
    A = i1e(kappa) / i0e(kappa) if kappa > 0 else 0.0
    assert torch.cos(y - 2.0).mean().item() == pytest.approx(A, abs=0.01)
    assert abs(torch.sin(y - 2.0).mean().item()) < 0.01


def torus_sample(score, x1, solver, steps, **options):
    """`solver`'s draws from x1 on the VE path (sigma_max 0.5 on a period 1: the marginal is
    ~uniform, moment 0.007); they stay on [0, 1)."""
    options.update(path=VE(0.005, 0.5), solver=solver, steps=steps, prediction="score")
    out = sample(score, x1, **options)
    assert ((out >= 0) & (out < 1)).all()
    return out


def sample_with_exact_score(target, solver, steps, **options):
    """3000 draws by `solver` from uniform noise with the exact diffused score."""
    x1 = torch.rand(3000, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    return torus_sample(lambda x, t: target.score(x, t), x1, solver, steps, **options)


def assert_matches_target(out, target, harmonics, moment_tol, tv_tol=0.05):
    for h in harmonics:
        moment = circular_moment(out, period=1 / h)
        assert (moment - target.circular_moment(h)).abs().max().item() < moment_tol
    assert histogram_tv(out, bin_probs(target)) < tv_tol


def test_predictor_corrector_matches_wrapped_target(target):
    out = sample_with_exact_score(
        target, "torus_pc", 60, generator=torch.Generator().manual_seed(2)
    )
    assert_matches_target(out, target, harmonics=(1, 2), moment_tol=0.04)


def test_probability_flow_ode_with_wrap_hook_matches_target(target):
    """The core's Heun solver in sigma with prediction="score" and the wrap x_t hook: the PF-ODE
    on the torus (the score is periodic, so Heun's unwrapped trial point is harmless)."""
    out = sample_with_exact_score(target, "heun", 30, grid="karras", xt_hook=wrap_hook())
    assert_matches_target(out, target, harmonics=(1,), moment_tol=0.04)


def test_uniform_prior_without_score_stays_uniform():
    """A zero score (uniform target): PC keeps uniform samples uniform (a check of the noise and
    wrapping, not of the score)."""
    x1 = torch.rand(4000, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    zero = lambda x, t: torch.zeros_like(x)  # noqa: E731
    out = torus_sample(zero, x1, "torus_pc", 10, generator=torch.Generator().manual_seed(4))
    assert circular_moment(out).abs().max().item() < 0.04


def test_bad_arguments():
    with pytest.raises(ValueError, match="means must be"):
        WrappedNormalMixture(torch.zeros(3), 0.1)
    with pytest.raises(ValueError, match="stds must be"):
        WrappedNormalMixture(torch.zeros(2, 1), torch.tensor([0.1, -0.1]))
    with pytest.raises(ValueError, match="score"):
        sample(
            lambda x, t: x,
            torch.rand(2, 1),
            path=VE(0.01, 0.5),
            solver="torus_pc",
            steps=2,
            prediction="eps",
        )
