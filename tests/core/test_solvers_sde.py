"""Stochastic samplers: W1 to the exact marginal falls with N; noise control; DDPM posterior."""

from __future__ import annotations

import pytest
import torch
from helpers import assert_close

from polydiff.core import paths, sample
from polydiff.core.param import Denoiser
from polydiff.core.solvers import get_solver
from polydiff.core.testing import GaussianMixture, marginal_cdf_1d, wasserstein1_1d

F64 = torch.float64


GMM1 = GaussianMixture([[-1.5], [0.5], [2.0]], [0.1, 0.3, 0.05], [0.3, 0.5, 0.2])
VP = paths.VPLinear()
T1 = 1e-3


def _w1(solver, n, num=20000, seed=0, **kw):
    g = torch.Generator().manual_seed(seed)
    x_T = torch.randn(num, 1, dtype=F64, generator=g)
    x = sample(
        GMM1.model(VP, "eps"),
        x_T,
        path=VP,
        solver=solver,
        steps=n,
        grid="logsnr",
        t_start=1.0,
        t_end=T1,
        generator=g,
        **kw,
    )
    return wasserstein1_1d(x, lambda z: marginal_cdf_1d(GMM1, VP, z, T1))


@pytest.mark.parametrize("solver", ["sde_dpmpp_2m", "ddpm", "euler_maruyama", "pc_langevin"])
def test_w1_to_exact_marginal_falls_with_steps(solver):
    w = [_w1(solver, n) for n in (10, 20, 40)]
    assert w[2] < w[1] < w[0], w
    assert w[2] < 0.6 * w[0], w


def test_sde_dpmpp_2m_beats_ancestral():
    assert _w1("sde_dpmpp_2m", 20) < _w1("ddpm", 20)


def test_generator_and_noise_list_reproducible():
    x_T = torch.randn(5, 2, dtype=F64)
    model = GaussianMixture([[0.0, 1.0]], [0.5]).model(VP, "eps")
    kw = {"path": VP, "solver": "sde_dpmpp_2m", "steps": 6}
    a = sample(model, x_T, generator=torch.Generator().manual_seed(7), **kw)
    b = sample(model, x_T, generator=torch.Generator().manual_seed(7), **kw)
    c = sample(model, x_T, generator=torch.Generator().manual_seed(8), **kw)
    assert_close(a, b, rtol=0, atol=0)
    assert (a - c).abs().max() > 1e-3
    g = torch.Generator().manual_seed(7)
    noises = [torch.randn(5, 2, dtype=F64, generator=g) for _ in range(6)]
    assert_close(sample(model, x_T, noise=noises, **kw), a, rtol=0, atol=0)
    with pytest.raises(ValueError, match="needs more"):
        sample(model, x_T, noise=noises[:3], **kw)


def test_ddpm_step_samples_the_posterior():
    """DDIM with eta = 1 is ancestral sampling from q(x_s | x_t, x0 = D) (Ho et al. 2020)."""
    path = paths.VPCosine()
    x = torch.randn(4, 3, dtype=F64)
    z = torch.randn(4, 3, dtype=F64)
    model = Denoiser(GaussianMixture([[0.0, 1.0, -1.0]], [0.4]).model(path, "eps"), path, "eps")
    t, s = torch.tensor(0.6, dtype=F64), torch.tensor(0.5, dtype=F64)
    solver = get_solver("ddpm")
    out = solver.step(solver.init(x, t), t, s, model, i=0, n=1, noise=lambda like: z).x
    mean, std = path.posterior(x, model(x, t), t, s)
    assert_close(out, mean + std * z, rtol=1e-10, atol=1e-12)
    eta0 = get_solver("ddim", eta=0.0).step(solver.init(x, t), t, s, model, i=0, n=1, noise=None).x
    half = (
        get_solver("ddim", eta=0.5)
        .step(solver.init(x, t), t, s, model, i=0, n=1, noise=lambda like: z * 0)
        .x
    )
    assert (half - eta0).abs().max() > 1e-6  # eta changes the mean direction weighting


def test_pc_langevin_on_ouve_runs_to_the_clean_estimate():
    path = paths.OUVE()
    gmm = GaussianMixture([[1.0, -1.0]], [0.01])
    mu = torch.zeros(2000, 2, dtype=F64)
    g = torch.Generator().manual_seed(0)
    x_T = path.prior_sample((2000, 2), mu=mu, generator=g, dtype=F64)
    x = sample(
        gmm.model(path, "score", mu=mu),
        x_T,
        path=path,
        solver="pc_langevin",
        steps=30,
        prediction="score",
        mu=mu,
        generator=g,
    )
    # at t_eps = 0.03 the marginal is alpha m + (1 - alpha) mu with std ~ sigma(0.03)
    a = float(path.alpha(torch.tensor(0.03, dtype=F64)))
    assert_close(x.mean(0), a * torch.tensor([1.0, -1.0], dtype=F64), atol=0.02, rtol=0)
