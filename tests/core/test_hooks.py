"""Step hooks (StepInfo), the gradient-guidance step rules and conditioning through the driver."""

from __future__ import annotations

import pytest
import torch

from polydiff.core import CFG, GradientGuidance, StepInfo, paths, sample
from polydiff.core.param import Denoiser, to_x0
from polydiff.core.testing import GaussianMixture

F64 = torch.float64
VP = paths.VPLinear()
GMM = GaussianMixture([[-1.0, 0.5], [1.0, -0.5]], [0.2, 0.3])
MODEL = GMM.model(VP, "eps")


def test_after_step_hooks_see_the_step_and_can_replace_its_result():
    x_T = torch.randn(5, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    seen: list[StepInfo] = []

    def hook(info: StepInfo):
        seen.append(info)
        return info.x_next

    out = sample(MODEL, x_T, path=VP, solver="ddim", steps=4, hooks=[hook])
    assert torch.equal(out, sample(MODEL, x_T, path=VP, solver="ddim", steps=4))
    assert [s.i for s in seen] == [0, 1, 2, 3] and seen[0].n == 4
    first = seen[0]
    assert torch.equal(first.x_t, x_T)
    D = to_x0(MODEL(x_T, first.t.expand(5)), "eps", x_T, first.t, VP)
    assert torch.allclose(first.x0_hat, D, rtol=1e-12, atol=1e-12)
    assert torch.allclose(first.eps, MODEL(x_T, first.t.expand(5)), rtol=1e-9, atol=1e-9)
    # DDIM's x_next = alpha_next x0_hat + sigma_next eps_hat, in the hook's terms
    a_n, s_n = VP.alpha(first.t_next), VP.sigma(first.t_next)
    assert torch.allclose(first.x_next, a_n * first.x0_hat + s_n * first.eps, atol=1e-12)
    # a hook's return value is the next sample
    zeroed = sample(MODEL, x_T, path=VP, steps=3, hooks=[lambda info: info.x_next * 0])
    assert torch.equal(zeroed, torch.zeros_like(x_T))


def test_dps_rule_adds_the_gradient_through_the_network_after_the_step():
    """One DDIM step with rule="dps" is the plain step plus scale * grad_{x_t} J(x0_hat(x_t))."""
    x_T = torch.randn(4, 2, dtype=F64, generator=torch.Generator().manual_seed(1))
    target = torch.tensor([0.3, -0.2], dtype=F64)

    def objective(x0, x, t):  # DPS's unsquared residual norm, negated
        return -(x0 - target).square().sum().sqrt()

    grid = torch.tensor([0.7, 0.4], dtype=F64)
    g = GradientGuidance(objective, 0.5, rule="dps")
    out = sample(MODEL, x_T, path=VP, solver="ddim", grid=grid, guidance=[g])
    plain = sample(MODEL, x_T, path=VP, solver="ddim", grid=grid)
    x = x_T.clone().requires_grad_(True)
    D = Denoiser(MODEL, VP, "eps")(x, grid[0])
    (grad,) = torch.autograd.grad(objective(D, x, grid[0]), x)
    assert torch.allclose(out, plain + 0.5 * grad, rtol=1e-12, atol=1e-12)
    assert torch.allclose(g.last_x0, D.detach(), atol=1e-12)
    # outside its interval the guidance does nothing
    off = GradientGuidance(objective, 0.5, rule="dps", interval=(0.0, 0.5))
    assert torch.equal(sample(MODEL, x_T, path=VP, solver="ddim", grid=grid, guidance=[off]), plain)


def test_value_rule_moves_the_noisy_sample_before_the_step():
    """A linear value J(x) = b.x moves x_t by scale * b before the model sees it."""
    x_T = torch.randn(3, 2, dtype=F64, generator=torch.Generator().manual_seed(2))
    b = torch.tensor([1.0, -2.0], dtype=F64)
    g = GradientGuidance(lambda x, t: x @ b, 0.1, rule="value")
    grid = torch.tensor([0.8, 0.5], dtype=F64)
    out = sample(MODEL, x_T, path=VP, solver="dpmpp_2m", grid=grid, guidance=[g])
    moved = sample(MODEL, x_T + 0.1 * b, path=VP, solver="dpmpp_2m", grid=grid)
    assert torch.allclose(out, moved, rtol=1e-13, atol=1e-13)
    with pytest.raises(ValueError, match="rule must be one of"):
        GradientGuidance(lambda x, t: x.sum(), rule="newton")


def test_the_condition_reaches_the_model_and_unconditional_models_keep_their_signature():
    seen = []

    def model_fn(x, t, cond):
        seen.append(cond)
        return MODEL(x, t) + 0 * cond

    x_T = torch.randn(2, 2, dtype=F64)
    c = torch.tensor(0.0, dtype=F64)
    out = sample(model_fn, x_T, path=VP, steps=3, cond=c)
    assert len(seen) == 3 and all(s is c for s in seen)
    assert torch.allclose(out, sample(MODEL, x_T, path=VP, steps=3), atol=1e-14)


def test_cfg_on_discrete_logits_uses_log_probabilities():
    """For x0 logits CFG combines log-probabilities: softmax(log p_u + w (log p_c - log p_u))
    is p_c^w p_u^(1-w) normalised."""
    c, u = torch.randn(2, 3, 5, dtype=F64), torch.randn(2, 3, 5, dtype=F64)
    fn = CFG(2.5, uncond="u").wrap_fn(
        lambda z, t, k: c if k == "c" else u, cond="c", prediction="logits"
    )
    p_c, p_u = c.softmax(-1), u.softmax(-1)
    expected = p_c**2.5 * p_u ** (-1.5)
    expected = expected / expected.sum(-1, keepdim=True)
    assert torch.allclose(fn(None, torch.tensor(0.5)).softmax(-1), expected, atol=1e-12)
