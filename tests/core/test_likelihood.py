"""Probability-flow log-likelihood against the exact log-density of Gaussian mixtures."""

from __future__ import annotations

import math

import pytest
import torch

from polydiff.core import paths
from polydiff.core.likelihood import gaussian_prior_log_prob, log_likelihood
from polydiff.core.testing import GaussianMixture

F64 = torch.float64
GMM = GaussianMixture([[-1.5, 0.5], [1.0, 1.0], [0.3, -1.5]], [0.3, 0.5, 0.2], [0.3, 0.4, 0.3])


def _exact_prior(gmm, path, t_start, mu=None):
    return lambda y: gmm.log_prob(
        y if mu is None else y + mu, torch.tensor(t_start, dtype=F64), path, mu
    )


@pytest.mark.parametrize(
    "path,t_start,prediction",
    [
        (paths.VPLinear(), 1.0, "eps"),
        (paths.VE(0.01, 20.0), 20.0, "x0"),
        (paths.Flow(), 0.999, "velocity"),
    ],
    ids=["vp", "ve", "flow"],
)
def test_exact_divergence_matches_the_mixture_density(path, t_start, prediction):
    """With the exact model and the exact marginal at t_start as the prior, the ODE's change of
    variables must reproduce log p_{t_end}(x) to the integrator's accuracy."""
    t_end = 1e-2
    x = GMM.sample(16, generator=torch.Generator().manual_seed(0)).to(F64)
    res = log_likelihood(
        GMM.model(path, prediction),
        x,
        path=path,
        prediction=prediction,
        steps=48,
        t_start=t_start,
        t_end=t_end,
        prior_log_prob=_exact_prior(GMM, path, t_start),
    )
    exact = GMM.log_prob(x, torch.tensor(t_end, dtype=F64), path)
    assert (res.log_prob - exact).abs().max() < 1e-3, res.log_prob - exact
    assert res.nfe == 4 * 48


def test_error_falls_with_steps_and_mean_reverting_paths_work():
    path, mu = paths.OUVE(), torch.tensor([[0.7, -0.4]], dtype=F64)
    x = GMM.sample(16, generator=torch.Generator().manual_seed(1)).to(F64) + mu
    exact = GMM.log_prob(x, torch.tensor(0.05, dtype=F64), path, mu)
    errs = [
        (
            log_likelihood(
                GMM.model(path, "eps", mu),
                x,
                path=path,
                steps=n,
                t_end=0.05,
                mu=mu,
                prior_log_prob=_exact_prior(GMM, path, path.t_start, mu),
            ).log_prob
            - exact
        )
        .abs()
        .max()
        .item()
        for n in (4, 16)
    ]
    assert errs[1] < errs[0] / 10 and errs[1] < 1e-3, errs


def test_hutchinson_is_unbiased_and_the_default_prior_is_close_on_vp():
    path = paths.VPLinear()
    x = GMM.sample(8, generator=torch.Generator().manual_seed(2)).to(F64)
    exact = GMM.log_prob(x, torch.tensor(1e-2, dtype=F64), path)
    xs = x.repeat(400, 1)  # 400 independent probes per point
    res = log_likelihood(
        GMM.model(path),
        xs,
        path=path,
        steps=16,
        t_end=1e-2,
        divergence="hutchinson",
        generator=torch.Generator().manual_seed(0),
    )
    est = res.log_prob.view(400, 8).mean(0)
    se = res.log_prob.view(400, 8).std(0) / math.sqrt(400)
    # the default prior N(0, sigma(1)^2) differs from the exact p_1 by alpha(1)^2 ~ 4e-5 in scale
    assert ((est - exact).abs() < 4 * se + 1e-3).all(), (est - exact, se)
    assert torch.allclose(res.bits_per_dim(), -res.log_prob / (2 * math.log(2.0)))  # 2 dims


def test_bad_arguments():
    path = paths.Flow()
    x = torch.zeros(2, 2)
    with pytest.raises(ValueError, match="finite log-SNR"):
        log_likelihood(lambda x, t: x, x, path=path, prediction="velocity", t_start=1.0)
    with pytest.raises(ValueError, match="divergence"):
        log_likelihood(lambda x, t: x, x, path=paths.VPLinear(), divergence="trace")
    lp = gaussian_prior_log_prob(paths.VE(0.01, 2.0), 2.0)(torch.zeros(3, 4))
    assert torch.allclose(lp, torch.full((3,), -4 * math.log(2.0) - 2 * math.log(2 * math.pi)))
