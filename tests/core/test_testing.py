"""The exact-score test bed itself: posterior mean (Tweedie), reference ODE (closed form)."""

from __future__ import annotations

import torch

from polydiff.core import paths
from polydiff.core.testing import GaussianMixture, marginal_cdf_1d, reference_ode, wasserstein1_1d

F64 = torch.float64


def test_posterior_mean_is_tweedie_of_the_marginal_density():
    """E[x0 | x_t] = (x + sigma^2 grad log p_t(x)) / alpha (Tweedie; Efron 2011), via autograd."""
    gmm = GaussianMixture(
        [[-1.0, 0.5, 0.0], [1.0, -1.0, 2.0]], [[0.2, 0.5, 0.1], [0.3, 0.3, 0.3]], [0.4, 0.6]
    )
    for path in (paths.VPLinear(), paths.VE(), paths.OUVE()):
        mu = torch.full((5, 3), 0.4, dtype=F64) if path.mean_reverting else None
        x = torch.randn(5, 3, dtype=F64, requires_grad=True)
        t = torch.tensor([0.05, 0.2, 0.4, 0.6, 0.9], dtype=F64)
        (grad,) = torch.autograd.grad(gmm.log_prob(x, t, path, mu).sum(), x)
        a, s = path.alpha(t)[:, None], path.sigma(t)[:, None]
        y = x.detach() if mu is None else x.detach() - mu
        tweedie = (y + s**2 * grad) / a
        tweedie = tweedie if mu is None else tweedie + mu
        assert torch.allclose(
            gmm.posterior_mean(x.detach(), t, path, mu), tweedie, rtol=1e-10, atol=1e-10
        )


def test_reference_ode_matches_the_gaussian_closed_form():
    """For x0 ~ N(m, s^2 I) the probability-flow ODE keeps the standardized value fixed:
    (x_t - alpha m) / sqrt(alpha^2 s^2 + sigma^2) is constant along trajectories."""
    m, s2 = torch.tensor([0.5, -1.0], dtype=F64), 0.3
    gmm = GaussianMixture([m.tolist()], [s2])
    path = paths.VPCosine()
    x_T = torch.randn(4, 2, dtype=F64)
    t0, t1 = torch.tensor(0.9, dtype=F64), torch.tensor(0.01, dtype=F64)
    out = reference_ode(gmm, path, x_T, 0.9, 0.01)

    def std(t):
        return torch.sqrt(path.alpha(t) ** 2 * s2 + path.sigma(t) ** 2)

    expected = path.alpha(t1) * m + std(t1) / std(t0) * (x_T - path.alpha(t0) * m)
    assert torch.allclose(out, expected, rtol=1e-10, atol=1e-10)


def test_w1_helper_on_exact_samples():
    gmm = GaussianMixture([[-1.0], [2.0]], [0.2, 0.1], [0.5, 0.5])
    path = paths.VPLinear()
    g = torch.Generator().manual_seed(0)
    x0 = gmm.sample(20000, generator=g)
    t = torch.tensor(0.3, dtype=F64)
    x_t = path.alpha(t) * x0 + path.sigma(t) * torch.randn(20000, 1, dtype=F64, generator=g)
    w_exact = wasserstein1_1d(x_t, lambda z: marginal_cdf_1d(gmm, path, z, 0.3))
    w_shifted = wasserstein1_1d(x_t + 0.1, lambda z: marginal_cdf_1d(gmm, path, z, 0.3))
    assert w_exact < 0.03 and abs(w_shifted - 0.1) < 0.03  # floor: mixture-count noise
