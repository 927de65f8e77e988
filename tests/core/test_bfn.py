"""Bayesian flows: updates against numerical Bayes, schedules against golden values, samplers with
the exact (Bayes-optimal) output against the target distribution."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from scipy.special import i0e

from polydiff.core import sample
from polydiff.core.bfn import (
    CircularBFN,
    ContinuousBFN,
    DiscreteBFN,
    von_mises_entropy,
)
from polydiff.core.discrete import EnumerableTarget
from polydiff.core.torus import sample_von_mises

# 1-D Gaussian mixture target for the continuous flow
PI = torch.tensor([0.3, 0.7], dtype=torch.float64)
M = torch.tensor([-0.5, 0.4], dtype=torch.float64)
S2 = torch.tensor([0.1, 0.2], dtype=torch.float64) ** 2


def mixture_output(path: ContinuousBFN):
    """E[x | mu, t] for mu ~ N(gamma x, gamma(1 - gamma)) (an affine Gaussian path): the
    Bayes-optimal x_hat. Per component mu ~ N(gamma m, gamma v), v = gamma s^2 + 1 - gamma."""

    def model(mu, t):
        g = path.gamma(t.double()).clamp_min(1e-12).reshape(-1, 1)
        v = g * S2 + 1 - g
        log_w = PI.log() - 0.5 * (mu - g * M) ** 2 / (g * v) - 0.5 * v.log()
        post = M + S2 * (mu - g * M) / v
        return (torch.softmax(log_w, -1) * post).sum(-1, keepdim=True)

    return model


def w1_to_mixture(x):
    g = torch.Generator().manual_seed(9)
    ref = torch.cat(
        [
            M[k] + S2[k].sqrt() * torch.randn(int(100000 * PI[k]), generator=g, dtype=torch.float64)
            for k in range(2)
        ]
    ).sort()[0]
    xs = x.reshape(-1).sort()[0]
    q = torch.quantile(ref, (torch.arange(len(xs), dtype=torch.float64) + 0.5) / len(xs))
    return (xs - q).abs().mean().item()


def bfn_sample(model, x, path, solver, steps, **options):
    """`solver` from `x` on `path`: x0 predictions on a uniform grid, seeded, unless overridden."""
    seeded = torch.Generator().manual_seed(0)
    options = {"prediction": "x0", "grid": "uniform", "generator": seeded, **options}
    return sample(model, x, path=path, solver=solver, steps=steps, **options)


def test_continuous_update_is_gaussian_bayes():
    path = ContinuousBFN(0.01)
    mu, rho = torch.tensor([0.3]), torch.tensor([2.0])
    y, alpha = torch.tensor([-0.2]), torch.tensor([5.0])
    mu1, rho1 = path.update(mu, rho, y, alpha)
    grid = torch.linspace(-3, 3, 20001, dtype=torch.float64)
    log_post = -0.5 * rho * (grid - mu) ** 2 - 0.5 * alpha * (y - grid) ** 2
    w = torch.softmax(log_post, 0)
    mean = (w * grid).sum()
    var = (w * (grid - mean) ** 2).sum()
    assert mu1.item() == pytest.approx(mean.item(), abs=1e-6)
    assert rho1.item() == pytest.approx(1 / var.item(), rel=1e-4)


def test_continuous_flow_matches_accumulated_updates():
    """n sender updates from the prior N(0, 1) give the flow N(gamma x, gamma (1 - gamma)) with
    precision sigma_1^(-2t) (BFN Sec. 4.4)."""
    path = ContinuousBFN(0.05)
    g = torch.Generator().manual_seed(0)
    x = torch.full((40000, 1), 0.7, dtype=torch.float64)
    mu, rho = torch.zeros_like(x), torch.ones_like(x)
    t_grid = torch.linspace(0, 0.6, 7, dtype=torch.float64)
    for a, b in itertools.pairwise(t_grid):
        alpha = path.beta(b) - path.beta(a)
        mu, rho = path.update(mu, rho, path.sender_sample(x, alpha, g), alpha)
    gam = path.gamma(t_grid[-1])
    assert rho[0].item() == pytest.approx(path.sigma_1 ** (-2 * 0.6), rel=1e-12)
    assert mu.mean().item() == pytest.approx((gam * 0.7).item(), abs=0.005)
    assert mu.var().item() == pytest.approx((gam * (1 - gam)).item(), rel=0.03)
    flow = path.flow_sample(x, 0.6, g)
    assert flow.var().item() == pytest.approx(mu.var().item(), rel=0.04)


def test_continuous_loss_weights():
    path = ContinuousBFN(0.02)
    x, x_hat = torch.tensor([[1.0, -1.0]]), torch.tensor([[0.5, -1.0]])
    got = path.loss(x_hat, x, 0.5).item()
    assert got == pytest.approx(-math.log(0.02) * 0.02 ** (-1.0) * 0.25)
    # the n-step weight tends to the continuous-time one: n (1 - s^(2/n)) / 2 -> -ln s
    w = path.discrete_loss_weight(torch.tensor(500), 1000).item()
    assert w == pytest.approx(-math.log(0.02) * 0.02 ** (-1.0), rel=1e-2)
    eps_hat = torch.randn(3, 1)
    mu = torch.randn(3, 1)
    x_hat = path.output_from_eps(mu, eps_hat, 0.5)
    g = path.gamma(torch.tensor(0.5)).item()
    assert torch.allclose(mu, g * x_hat + math.sqrt(g * (1 - g)) * eps_hat, atol=1e-5)


def test_continuous_sampler_recovers_mixture():
    path = ContinuousBFN(0.01)
    w1 = []
    for n in (5, 20, 100):
        x = torch.zeros(6000, 1, dtype=torch.float64)
        out = bfn_sample(mixture_output(path), x, path, "bfn_continuous", n)
        w1.append(w1_to_mixture(out))
    assert w1[0] > w1[1] > w1[2] and w1[2] < 0.02, w1


def test_discrete_update_is_bayes_and_flow_is_consistent():
    path = DiscreteBFN(4, beta_1=2.0)
    g = torch.Generator().manual_seed(0)
    # theta' ∝ e^y theta is Bayes' rule for the likelihood N(y; alpha (K e_x - 1), alpha K I)
    log_theta = torch.log_softmax(torch.randn(4, generator=g, dtype=torch.float64), 0)
    y = torch.randn(4, generator=g, dtype=torch.float64)
    alpha = 0.7
    log_lik = torch.stack(
        [
            -((y - alpha * (4 * torch.eye(4, dtype=torch.float64)[k] - 1)) ** 2).sum()
            / (2 * alpha * 4)
            for k in range(4)
        ]
    )
    expected = torch.log_softmax(log_theta + log_lik, 0)
    assert torch.allclose(path.update(log_theta, y), expected, atol=1e-12)
    # accumulated sender updates from the uniform prior = the flow at t (beta additive)
    x = torch.full((30000, 1), 2)
    lt = torch.full((30000, 1, 4), -math.log(4), dtype=torch.float64)
    for a, b in ((0.0, 0.3), (0.3, 0.7)):
        alpha = path.beta(torch.tensor(b)) - path.beta(torch.tensor(a))
        lt = path.update(lt, path.sender_sample(x, alpha, g))
    flow = path.flow_sample(x, 0.7, g)
    assert torch.allclose(lt.exp().mean(0), flow.exp().mean(0), atol=0.01)


def test_discrete_loss_hand_value():
    path = DiscreteBFN(3, beta_1=2.0)
    probs = torch.tensor([[[0.5, 0.3, 0.2]]])
    got = path.loss(probs, torch.tensor([[1]]), 0.5).item()
    assert got == pytest.approx(3 * 2.0 * 0.5 * (0.25 + 0.49 + 0.04))


def test_discrete_sampler_recovers_enumerable_target():
    """The exact output is p(x | theta) ∝ p(x) prod_l theta_l[x_l] (theta's logits are the
    accumulated sender samples, a sufficient statistic); TV to the target falls with steps."""
    target = EnumerableTarget.random(3, 3, seed=1)
    path = DiscreteBFN(3, beta_1=3.0)

    def model(theta, t):
        return torch.log(target.tilted_marginals(torch.log(theta)))

    tvs = []
    for n in (2, 8, 32):
        x = torch.zeros(6000, 3, dtype=torch.long)
        out = bfn_sample(model, x, path, "bfn_discrete", n, prediction="logits")
        assert out.dtype == torch.long
        tvs.append(target.tv(out))
    assert tvs[0] > tvs[1] > tvs[2] and tvs[2] < 0.05, tvs


def test_circular_update_matches_grid_bayes():
    """vM(x; m, c) * vM(y; x, alpha) normalized on a fine grid equals vM(x; m', c')."""
    m, c = torch.tensor(2.9, dtype=torch.float64), torch.tensor(3.0, dtype=torch.float64)
    y, alpha = torch.tensor(-2.8, dtype=torch.float64), torch.tensor(1.7, dtype=torch.float64)
    m1, c1 = CircularBFN.update(m, c, y, alpha)
    grid = torch.linspace(-math.pi, math.pi, 4097, dtype=torch.float64)[:-1]
    dx = 2 * math.pi / 4096
    post = torch.exp(c * torch.cos(grid - m) + alpha * torch.cos(y - grid))
    post = post / (post.sum() * dx)
    vm = torch.exp(c1 * (torch.cos(grid - m1) - 1)) / (2 * math.pi * float(i0e(c1.item())))
    assert torch.allclose(post, vm, atol=1e-10)
    assert -math.pi <= m1.item() < math.pi


def test_circular_schedule_golden_values():
    """crystal.md: N = 10, beta_1 = 1e3: alpha 1.48 ... 539 (sum 1002); N = 1000: 0.125 ... 8.22
    (sum 1375). Entropy is linear in the step by construction."""
    p = CircularBFN(10, 1e3)
    a = p.alphas
    assert a[0].item() == pytest.approx(1.48, abs=0.01)
    assert a[-1].item() == pytest.approx(539, rel=0.01)
    assert a.sum().item() == pytest.approx(1002, rel=0.005)
    h = [von_mises_entropy(b) for b in p.betas.tolist()]
    steps = [h[i + 1] - h[i] for i in range(9)]
    assert max(steps) - min(steps) < 1e-8
    p = CircularBFN(1000, 1e3)
    assert p.alphas[0].item() == pytest.approx(0.125, abs=0.002)
    assert p.alphas[-1].item() == pytest.approx(8.22, rel=0.01)
    assert p.alphas.sum().item() == pytest.approx(1375, rel=0.005)


def test_circular_schedule_one_step_property_and_flow():
    """Monte Carlo with the von Mises sampler: E|beta_(i-1) + alpha_i e^{iz}| = beta_i for
    z ~ vM(0, alpha_i) (the defining equation, solved by quadrature). The flow's own mean
    concentration only approximately follows beta_i (its c_(i-1) is random and m != x, as in the
    reference); after all n steps it is within a few percent of beta_1."""
    p = CircularBFN(10, 1e3)
    g = torch.Generator().manual_seed(0)
    for i in (2, 6, 10):
        a, b_prev = p.alphas[i - 1], p.betas[i - 2]
        z = sample_von_mises(torch.zeros(20000, dtype=torch.float64), a, g)
        resultant = torch.abs(b_prev + a * torch.exp(1j * z)).mean()
        assert resultant.item() == pytest.approx(p.betas[i - 1].item(), rel=0.005)
    x = torch.full((3000,), 1.0, dtype=torch.float64)
    m, c = p.flow_sample(x, 10, g)
    assert c.mean().item() == pytest.approx(1000, rel=0.05)
    assert torch.cos(m - 1.0).mean().item() > 0.99


def test_circular_sampler_loop_and_loss_weight():
    """The sender/receiver loop with the exact output of a point-mass target (x_hat = x*) ends
    with output x*, belief mean ~ x* and mean concentration ~ beta_1."""
    p = CircularBFN(10, 1e3)
    x_star = torch.linspace(-3.0, 3.0, 8, dtype=torch.float64)

    def model(m, t, c):
        assert m.shape == c.shape and t.shape == (m.shape[0],)
        return x_star.expand_as(m)

    x = torch.zeros(500, 8, dtype=torch.float64)
    out, state = bfn_sample(model, x, p, "bfn_circular", 10, return_state=True)
    assert torch.allclose(out, x_star.expand_as(out))
    assert state.c.mean().item() == pytest.approx(1000, rel=0.03)
    w = p.loss_weight(torch.tensor([1, 10]))
    a = p.alphas[[0, 9]]
    assert torch.allclose(w, 10 * a * torch.special.i1(a) / torch.special.i0(a), rtol=1e-6)
    with pytest.raises(ValueError, match="has 10 steps"):
        bfn_sample(model, torch.zeros(2, 8), p, "bfn_circular", 5)
    ent = p.entropy_condition(torch.tensor([0.0, 1e3], dtype=torch.float64))
    assert torch.allclose(ent, torch.tensor([0.0, 1.0], dtype=torch.float64), atol=1e-6)


def test_bad_path_argument():
    with pytest.raises(ValueError, match="sigma_1"):
        ContinuousBFN(1.5)


@pytest.mark.parametrize(
    "solver, prediction, error",
    [("bfn_continuous", "score", "prediction"), ("bfn_discrete", "logits", "needs a DiscreteBFN")],
)
def test_bad_sample_arguments(solver, prediction, error):
    with pytest.raises(ValueError, match=error):
        bfn_sample(
            lambda x, t: x, torch.zeros(2, 1), ContinuousBFN(), solver, 2, prediction=prediction
        )


def test_circular_end_back_sampler():
    """CrysBFN's end_back loop: n calls, the last prediction is the output; before it the belief is
    a fresh flow sample given the prediction (mean concentration ~ beta_i)."""
    p = CircularBFN(10, 1e3)
    x_star = torch.linspace(-3.0, 3.0, 8, dtype=torch.float64)
    calls, concentrations = [], []

    def model(m, t, c):
        calls.append(t[0].item())
        concentrations.append(c.mean().item())
        return x_star.expand_as(m)

    out = bfn_sample(
        model, torch.zeros(400, 8, dtype=torch.float64), p, "bfn_circular_end_back", 10
    )
    assert torch.allclose(out, x_star.expand_as(out))
    assert len(calls) == 10 and calls[0] == 0.0 and calls[-1] == pytest.approx(0.9)
    assert concentrations[0] == 0.0
    assert concentrations[-1] == pytest.approx(p.betas[8].item(), rel=0.05)


def test_circular_flow_bank_matches_direct_simulation_in_distribution():
    """A bank entry rotated by x has the law of the flow at x: KS tests on (m - x, c) against
    direct sequential simulation at several step counts; row 0 is the uniform prior."""
    from scipy.stats import kstest

    p = CircularBFN(10, 1e3)
    g = torch.Generator().manual_seed(3)
    bank = p.flow_bank(20000, g)
    assert bank[0].shape == (11, 20000) and torch.all(bank[1][0] == 0)
    assert kstest(bank[0][0].numpy(), "uniform", args=(-math.pi, 2 * math.pi)).pvalue > 0.01
    x = (torch.rand(4000, generator=g, dtype=torch.float64) * 2 - 1) * math.pi
    for k in (1, 4, 9):
        m, c = p.flow_from_bank(x, k, bank, g)
        m_ref, c_ref = p.flow_sample(x, k, g)
        rel = torch.remainder(m - x + math.pi, 2 * math.pi) - math.pi
        rel_ref = torch.remainder(m_ref - x + math.pi, 2 * math.pi) - math.pi
        assert kstest(rel.numpy(), rel_ref.numpy()).pvalue > 0.01, k
        assert kstest(c.numpy(), c_ref.numpy()).pvalue > 0.01, k
        # the check has power: another step count is told apart
        _, c_far = p.flow_from_bank(x, k + 1, bank, g)
        assert kstest(c_far.numpy(), c_ref.numpy()).pvalue < 1e-6, k
    # per-element step counts select per-element rows
    ks = torch.tensor([0, 10]).repeat(2000)
    _, c = p.flow_from_bank(x, ks, bank, g)
    assert torch.all(c[ks == 0] == 0) and torch.all(c[ks == 10] > 100)
