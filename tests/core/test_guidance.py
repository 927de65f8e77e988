"""CFG, gradient guidance and SMC steering against closed-form Gaussian posteriors."""

from __future__ import annotations

import pytest
import torch
from helpers import assert_close

from polydiff.core import CFG, SMC, GradientGuidance, paths, sample
from polydiff.core.guidance import best_of
from polydiff.core.param import Denoiser
from polydiff.core.testing import GaussianMixture

F64 = torch.float64
VP = paths.VPLinear()
SIGMA = torch.tensor([[0.5, 0.3], [0.3, 0.4]], dtype=F64)


def gaussian(mean) -> GaussianMixture:
    return GaussianMixture([mean], SIGMA[None])


def _labelled(models):
    """One conditional model of the two Gaussians: model_fn(x, t, label)."""

    def model_fn(x, t, label):
        return models[label](x, t)

    return model_fn


def test_cfg_on_equal_covariance_gaussians_is_the_shifted_gaussian():
    """With equal covariances, u + w (c - u) is exactly the model of N(m_u + w (m_c - m_u),
    Sigma) at every (x, t) in every parameterization, so guided sampling targets that Gaussian."""
    m_u, m_c, w = [0.0, 0.0], [1.0, -0.5], 3.0
    x = torch.randn(16, 2, dtype=F64)
    t = torch.rand(16, dtype=F64) * 0.9 + 0.05
    for kind in ("eps", "x0", "v", "velocity"):
        models = {"c": gaussian(m_c).model(VP, kind), "u": gaussian(m_u).model(VP, kind)}
        target = gaussian([w * 1.0, w * -0.5]).model(VP, kind)
        by_label = CFG(w, uncond="u").wrap_fn(_labelled(models), cond="c", prediction=kind)
        assert_close(by_label(x, t), target(x, t), rtol=1e-10, atol=1e-10, msg=kind)
        two_nets = CFG(w, uncond_fn=models["u"]).wrap_fn(models["c"], cond=None, prediction=kind)
        assert_close(two_nets(x, t), target(x, t), rtol=1e-10, atol=1e-10, msg=kind)
    # and end to end: samples have the guided mean and the common covariance
    models = {"c": gaussian(m_c).model(VP, "eps"), "u": gaussian(m_u).model(VP, "eps")}
    x_T = torch.randn(4000, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    xs = sample(
        _labelled(models), x_T, path=VP, solver="dpmpp_2m", steps=25, cond="c",
        guidance=[CFG(w, uncond="u")],
    )  # fmt: skip
    assert_close(xs.mean(0), torch.tensor([3.0, -1.5], dtype=F64), atol=0.05, rtol=0)
    assert_close(torch.cov(xs.T), SIGMA, atol=0.05, rtol=0)
    # scale 1 is the conditional model, scale 0 the unconditional one
    for scale, label in ((1.0, "c"), (0.0, "u")):
        guided = sample(_labelled(models), x_T[:8], path=VP, steps=6, cond="c",
                        guidance=[CFG(scale, uncond="u")])  # fmt: skip
        plain = sample(models[label], x_T[:8], path=VP, steps=6)
        assert_close(guided, plain, rtol=1e-10, atol=1e-10, msg=str(scale))


def test_cfg_guidance_interval():
    m_u, m_c, w = [0.0, 0.0], [1.0, -0.5], 3.0
    models = {"c": gaussian(m_c).model(VP, "eps"), "u": gaussian(m_u).model(VP, "eps")}
    target = gaussian([3.0, -1.5]).model(VP, "eps")
    guided = CFG(w, uncond="u", interval=(0.2, 0.6))
    fn = guided.wrap_fn(_labelled(models), cond="c", prediction="eps")
    x = torch.randn(6, 2, dtype=F64)
    t = torch.tensor([0.1, 0.3, 0.5, 0.7, 0.9, 0.2], dtype=F64)
    inside = (t >= 0.2) & (t <= 0.6)
    expected = torch.where(inside[:, None], target(x, t), models["c"](x, t))
    assert_close(fn(x, t), expected, rtol=1e-10, atol=1e-10)
    # an interval outside the sampled range is plain conditional sampling
    x_T = torch.randn(8, 2, dtype=F64)
    out = CFG(w, uncond="u", interval=(2.0, 3.0))
    a = sample(_labelled(models), x_T, path=VP, steps=10, cond="c", guidance=[out])
    assert_close(a, sample(models["c"], x_T, path=VP, steps=10), rtol=1e-12, atol=1e-12)


def test_cfg_needs_a_way_to_the_unconditional_model():
    model = gaussian([0.0, 0.0]).model(VP, "eps")
    with pytest.raises(ValueError, match="CFG needs something to guide by"):
        sample(model, torch.randn(2, 2, dtype=F64), path=VP, steps=2, guidance=[CFG(2.0)])
    with pytest.raises(ValueError, match="uncond_fn alone"):
        CFG(2.0, uncond_fn=model, uncond=0)


def _posterior_cov(path, t):
    a, s = path.alpha(t)[:, None, None], path.sigma(t)[:, None, None]
    C = a**2 * SIGMA + s**2 * torch.eye(2, dtype=F64)
    return SIGMA - a**2 * SIGMA @ torch.linalg.solve(C, SIGMA.expand_as(C))


def test_gradient_guidance_with_exact_likelihood_is_the_posterior():
    """Observation y = x0[0] + tau n. With p(y | x_t) = N(y; D_0(x_t), tau^2 + Var[x0_0 | x_t])
    the guided score is exactly grad log p_t(x | y): the guided denoiser equals the denoiser of
    the Gaussian posterior N(m_p, S_p)."""
    m, y, tau = torch.tensor([0.2, -0.1], dtype=F64), 1.3, 0.2
    model = gaussian(m.tolist()).model(VP, "eps")

    def log_lik(x0_hat, x, t):
        t = t.expand(x.shape[0]) if t.ndim == 0 else t
        var = tau**2 + _posterior_cov(VP, t)[:, 0, 0]
        return -((y - x0_hat[:, 0]) ** 2) / (2 * var)

    k = SIGMA[:, 0] / (SIGMA[0, 0] + tau**2)
    m_p = m + k * (y - m[0])
    S_p = SIGMA - k[:, None] * SIGMA[0][None, :]
    posterior = GaussianMixture([m_p.tolist()], S_p[None]).model(VP, "eps")
    guided = GradientGuidance(log_lik).wrap(Denoiser(model, VP, "eps"))
    x = torch.randn(10, 2, dtype=F64)
    t = torch.rand(10, dtype=F64) * 0.9 + 0.05
    assert_close(guided(x, t), Denoiser(posterior, VP, "eps")(x, t), rtol=1e-9, atol=1e-9)
    x_T = torch.randn(4000, 2, dtype=F64, generator=torch.Generator().manual_seed(1))
    xs = sample(model, x_T, path=VP, steps=25, guidance=[GradientGuidance(log_lik)])
    assert_close(xs.mean(0), m_p, atol=0.03, rtol=0)
    assert_close(torch.cov(xs.T), S_p, atol=0.03, rtol=0)


def test_smc_reward_tilting_matches_the_tilted_gaussian():
    """Target p(x0) exp(r(x0)) with r(x) = b x and x0 ~ N(m, s^2): N(m + b s^2, s^2)."""
    m, s, b = 0.5, 0.8, 1.0
    model = GaussianMixture([[m]], [s**2]).model(VP, "eps")
    g = torch.Generator().manual_seed(0)
    x_T = torch.randn(4000, 1, dtype=F64, generator=g)
    smc = SMC(lambda x0: b * x0[:, 0], scale=1.0)
    xs = sample(model, x_T, path=VP, solver="sde_dpmpp_2m", steps=40, smc=smc, generator=g)
    assert xs.mean().item() == pytest.approx(m + b * s**2, abs=0.08)
    assert xs.std().item() == pytest.approx(s, abs=0.08)
    plain = sample(model, x_T, path=VP, solver="sde_dpmpp_2m", steps=40, generator=g)
    assert plain.mean().item() == pytest.approx(m, abs=0.06)


def test_smc_with_zero_reward_is_plain_multistep_sampling():
    model = GaussianMixture([[0.0, 1.0]], [0.3]).model(VP, "eps")
    x_T = torch.randn(32, 2, dtype=F64)
    smc = SMC(lambda x0: torch.zeros(x0.shape[0], dtype=F64), num_particles=8)
    a = sample(model, x_T, path=VP, solver="dpmpp_3m", steps=12, smc=smc)
    assert_close(
        a, sample(model, x_T, path=VP, solver="dpmpp_3m", steps=12), rtol=1e-12, atol=1e-12
    )


def test_smc_resampling_stays_within_groups_and_counts_nfe():
    smc = SMC(lambda x0: x0[:, 0], num_particles=4)
    log_w = torch.tensor([0.0, 5.0, 0.0, 0.0, 3.0, 0.0, 0.0, 0.0], dtype=F64)
    idx, new_log_w = smc._resample(log_w, torch.Generator().manual_seed(0), force=True)
    assert (idx[:4] < 4).all() and (idx[4:] >= 4).all()
    assert (idx[:4] == 1).sum() >= 3 and (idx[4:] == 4).sum() >= 3
    assert_close(new_log_w, torch.zeros(8, dtype=F64))
    calls = []
    gmm = GaussianMixture([[0.0, 1.0]], [0.3])

    def counting(x, t):
        calls.append(1)
        return gmm.model(VP, "eps")(x, t)

    sample(counting, torch.randn(8, 2, dtype=F64), path=VP, solver="dpmpp_2m", steps=6, smc=smc)
    assert len(calls) == 6  # the potential's evaluation is reused by the solver
    with pytest.raises(ValueError, match="multiple of num_particles"):
        sample(counting, torch.randn(6, 2, dtype=F64), path=VP, steps=2, smc=smc)


def test_best_of_keeps_the_highest_scored_candidate_of_each_group():
    g = torch.Generator().manual_seed(0)
    x, scores = torch.randn(12, 3, 2, generator=g), torch.randn(12, generator=g)
    best = best_of(x, scores, 4)
    assert best.shape == (3, 3, 2)
    for i in range(3):
        j = 4 * i + int(scores[4 * i : 4 * i + 4].argmax())
        assert torch.equal(best[i], x[j])
    assert torch.equal(best_of(x, scores, 1), x)
    for k, s in ((5, scores), (4, scores[:8]), (0, scores)):
        with pytest.raises(ValueError, match="best_of"):
            best_of(x, s, k)
