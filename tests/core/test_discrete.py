"""Discrete paths and samplers against exact ground truth (an enumerable target over V^L)."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import assert_close

from polydiff.core.discrete import (
    CosineSchedule,
    EnumerableTarget,
    FirstHittingSampler,
    LogLinearSchedule,
    MaskedAncestral,
    MaskedConfidence,
    MaskedDiffusion,
    ReMDMSampler,
    UniformAncestral,
    UniformDiffusion,
    sample_categorical,
    top_p_filter,
)

V, L = 3, 4
SCHEDULES = [
    LogLinearSchedule(1e-3),
    CosineSchedule(1e-3, "cos"),
    CosineSchedule(1e-3, "one_minus_sin"),
]


def drive(solver, x, grid, model, seed):
    """The driver's loop: init, then step(state, t_cur, t_next, model, i=, n=, noise=)."""
    gen = torch.Generator().manual_seed(seed)
    state = solver.init(x, grid[0])
    n = len(grid) - 1
    for i in range(n):
        state = solver.step(state, grid[i], grid[i + 1], model, i=i, n=n, noise=gen)
    return state


def grid(steps):
    return torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)


@pytest.fixture(scope="module")
def target():
    return EnumerableTarget.random(V, L, scale=2.0, seed=0)


# ----------------------------------------------------------------------------- schedules / paths


@pytest.mark.parametrize("sched", SCHEDULES, ids=["loglinear", "cos", "one_minus_sin"])
def test_schedule_endpoints_derivative_inverse(sched):
    t = torch.linspace(0.01, 0.99, 41, dtype=torch.float64)
    assert sched.alpha(torch.tensor(0.0, dtype=torch.float64)) == pytest.approx(1.0)
    assert sched.alpha(torch.tensor(1.0, dtype=torch.float64)) == pytest.approx(1e-3)
    h = 1e-6
    fd = (sched.alpha(t + h) - sched.alpha(t - h)) / (2 * h)
    assert_close(sched.dalpha(t), fd, rtol=1e-6, atol=1e-8)
    assert_close(sched.t_of_alpha(sched.alpha(t)), t, rtol=1e-9, atol=1e-9)


def test_cosine_variants_differ_as_documented():
    t = torch.tensor(0.5, dtype=torch.float64)
    cos, sin = CosineSchedule(0.0, "cos"), CosineSchedule(0.0, "one_minus_sin")
    assert cos.alpha(t).item() == pytest.approx(math.cos(math.pi / 4))
    assert sin.alpha(t).item() == pytest.approx(1 - math.sin(math.pi / 4))


def test_forward_marginals_per_position_time():
    g = torch.Generator().manual_seed(0)
    B = 20000
    t = torch.tensor([0.1, 0.4, 0.7, 0.95], dtype=torch.float64).expand(B, L)  # time per position
    x0 = torch.randint(V, (B, L), generator=g)
    mp, up = MaskedDiffusion(V), UniformDiffusion(V)
    alpha = mp.alpha(t[0])
    keep = (mp.sample_marginal(x0, t, g) == x0).double().mean(0)
    assert_close(keep, alpha, atol=0.015, rtol=0)
    same = (up.sample_marginal(x0, t, g) == x0).double().mean(0)
    assert_close(same, alpha + (1 - alpha) / V, atol=0.015, rtol=0)


def _bayes_posterior(Q_s, Q_ts, z_t):
    """q(z_s = j | z_t, x) for all x from the transition matrices: rows x, columns j."""
    num = Q_s * Q_ts[:, z_t].unsqueeze(0)
    return num / num.sum(-1, keepdim=True)


def test_masked_posterior_is_bayes_rule():
    path = MaskedDiffusion(V, schedule=CosineSchedule())
    t, s = torch.tensor(0.7, dtype=torch.float64), torch.tensor(0.3, dtype=torch.float64)
    a_t, a_s = path.alpha(t), path.alpha(s)
    S = V + 1
    Q_s = torch.zeros(V, S, dtype=torch.float64)  # q(z_s | x)
    Q_s[:, :V] = a_s * torch.eye(V, dtype=torch.float64)
    Q_s[:, V] = 1 - a_s
    Q_ts = torch.zeros(S, S, dtype=torch.float64)  # q(z_t | z_s)
    Q_ts[:V, :V] = (a_t / a_s) * torch.eye(V, dtype=torch.float64)
    Q_ts[:V, V] = 1 - a_t / a_s
    Q_ts[V, V] = 1.0
    for z_t in range(S):
        for x in range(V):
            if Q_s[x] @ Q_ts[:, z_t] == 0:
                continue  # z_t impossible from x
            ref = _bayes_posterior(Q_s, Q_ts, z_t)[x]
            got = path.posterior_probs(
                torch.eye(V, dtype=torch.float64)[x].view(1, 1, V), torch.tensor([[z_t]]), t, s
            )
            assert_close(got.view(-1), ref)


def test_uniform_posterior_is_bayes_rule():
    path = UniformDiffusion(V)
    t, s = torch.tensor(0.8, dtype=torch.float64), torch.tensor(0.35, dtype=torch.float64)
    a_t, a_s = path.alpha(t), path.alpha(s)
    eye = torch.eye(V, dtype=torch.float64)
    Q_s = a_s * eye + (1 - a_s) / V
    Q_ts = (a_t / a_s) * eye + (1 - a_t / a_s) / V
    for z_t in range(V):
        ref = _bayes_posterior(Q_s, Q_ts, z_t)  # [x, j]
        got = path.posterior_probs(eye.view(V, 1, V), torch.full((V, 1), z_t), t, s)
        assert_close(got.view(V, V), ref)


def test_loo_and_posterior_logits_round_trip(target):
    path = UniformDiffusion(V)
    g = torch.Generator().manual_seed(1)
    z = torch.randint(V, (50, L), generator=g)
    t = torch.rand(50, L, generator=g, dtype=torch.float64)
    alpha = path.alpha(t)
    loo = torch.log(target.uniform_posterior(z, alpha, leave_one_out=True))
    full = target.uniform_posterior(z, alpha)
    assert_close(torch.softmax(path.loo_to_posterior_logits(loo, z, t), -1), full)
    back = path.posterior_to_loo_logits(torch.log(full), z, t)
    assert_close(torch.softmax(back, -1), loo.exp())


# ----------------------------------------------------------------------------- losses


def test_mdlm_loss_hand_value():
    path = MaskedDiffusion(3)  # log-linear: weight alpha'/(1 - alpha) = -1/t
    logits = torch.log(torch.tensor([[[0.5, 0.25, 0.25], [0.2, 0.3, 0.5]]], dtype=torch.float64))
    x0, z_t = torch.tensor([[1, 2]]), torch.tensor([[3, 2]])  # first masked, second clean
    loss = path.loss(logits, x0, z_t, 0.5)
    assert_close(loss, torch.tensor([[-math.log(0.25) / 0.5, 0.0]], dtype=torch.float64))


def test_mdlm_loss_is_limit_of_discrete_kl():
    """E_{z_t}[KL(q(z_s|z_t,x) || q(z_s|z_t,x_theta))] / dt -> E_{z_t}[loss integrand]."""
    path = MaskedDiffusion(V, schedule=CosineSchedule())
    x_theta = torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64)
    x, t, dt = 1, torch.tensor(0.6, dtype=torch.float64), 1e-6
    a_t = path.alpha(t)
    kl = 0.0
    for z_t, prob in ((V, 1 - a_t), (x, a_t)):
        z = torch.tensor([[z_t]])
        q = path.posterior_probs(torch.eye(V, dtype=torch.float64)[x].view(1, 1, V), z, t, t - dt)
        p = path.posterior_probs(x_theta.view(1, 1, V), z, t, t - dt)
        keep = q > 0
        kl = kl + prob * (q[keep] * (q[keep] / p[keep]).log()).sum()
    integrand = (1 - a_t) * path.loss(
        x_theta.log().view(1, 1, V), torch.tensor([[x]]), torch.tensor([[V]]), t
    )
    assert (kl / dt).item() == pytest.approx(integrand.item(), rel=1e-4)


def test_udlm_loss_hand_value():
    path = UniformDiffusion(2)  # K = 2, log-linear eps = 1e-3
    t = 0.5
    a = 1 - (1 - 1e-3) * t
    xbar = torch.tensor([2 * a + 1 - a, 1 - a], dtype=torch.float64)  # x = 0
    xbar_theta = torch.tensor([1.0, 1.0], dtype=torch.float64)  # x_theta uniform
    for i in (0, 1):
        j = 1 - i
        bracket = (
            2 / xbar[i]
            - 2 / xbar_theta[i]
            - (xbar[j] / xbar[i]) * math.log(xbar_theta[i] * xbar[j] / (xbar_theta[j] * xbar[i]))
        )
        expected = -(1 - 1e-3) / (2 * a) * bracket
        got = path.loss(
            torch.zeros(1, 1, 2, dtype=torch.float64), torch.tensor([[0]]), torch.tensor([[i]]), t
        )
        assert got.item() == pytest.approx(expected.item(), rel=1e-12)
        assert got.item() > 0


def test_udlm_loss_is_limit_of_discrete_kl():
    path = UniformDiffusion(V, schedule=CosineSchedule())
    x_theta = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    x, t, dt = 0, torch.tensor(0.45, dtype=torch.float64), 1e-6
    a_t = path.alpha(t)
    onehot = torch.eye(V, dtype=torch.float64)[x].view(1, 1, V)
    kl, integrand = 0.0, 0.0
    for z_t in range(V):
        prob = a_t * (z_t == x) + (1 - a_t) / V
        z = torch.tensor([[z_t]])
        q = path.posterior_probs(onehot, z, t, t - dt)
        p = path.posterior_probs(x_theta.view(1, 1, V), z, t, t - dt)
        kl = kl + prob * (q * (q / p).log()).sum()
        integrand = integrand + prob * path.loss(
            x_theta.log().view(1, 1, V), torch.tensor([[x]]), z, t
        )
    assert (kl / dt).item() == pytest.approx(integrand.item(), rel=1e-4)


# ----------------------------------------------------------------------------- samplers


def test_masked_ancestral_tv_falls_with_steps(target):
    path = MaskedDiffusion(V)
    model = target.masked_denoiser(path)
    tvs = [
        target.tv(drive(MaskedAncestral(path), path.prior((8000, L)), grid(n), model, 0).x)
        for n in (1, 4, 16)
    ]
    assert tvs[0] > tvs[1] > tvs[2]
    assert tvs[0] > 0.4 and tvs[2] < 0.1, tvs


def test_uniform_ancestral_tv_falls_with_steps(target):
    path = UniformDiffusion(V)
    model = target.uniform_denoiser(path)
    x1 = path.prior((8000, L), generator=torch.Generator().manual_seed(5))
    tvs = [target.tv(drive(UniformAncestral(path), x1, grid(n), model, 0).x) for n in (1, 4, 16)]
    assert tvs[0] > tvs[1] > tvs[2]
    assert tvs[0] > 0.4 and tvs[2] < 0.1, tvs


def test_uniform_posterior_denoiser_gives_same_samples(target):
    path = UniformDiffusion(V)
    x1 = path.prior((500, L), generator=torch.Generator().manual_seed(5))
    a = drive(UniformAncestral(path), x1, grid(4), target.uniform_denoiser(path), 3).x
    solver = UniformAncestral(path, denoiser="posterior")
    b = drive(solver, x1, grid(4), target.uniform_denoiser(path, leave_one_out=False), 3).x
    assert torch.equal(a, b)


def test_caching_exact_in_law_with_fewer_calls_and_draws(target, monkeypatch):
    """No-update caching: calls the model only on rows that changed and draws candidate tokens
    only for those rows, and still samples the exact target (as the uncached sampler does)."""
    path = MaskedDiffusion(V)
    exact = target.masked_denoiser(path)
    rows, drawn = [], []

    def counted(z, t):
        rows.append(z.shape[0])
        return exact(z, t)

    draw_x0 = MaskedAncestral._draw_x0

    def counted_draw(self, probs, source):
        drawn.append(probs.shape[0])
        return draw_x0(self, probs, source)

    monkeypatch.setattr(MaskedAncestral, "_draw_x0", counted_draw)
    B, steps = 6000, 64
    plain = drive(MaskedAncestral(path), path.prior((B, L)), grid(steps), counted, 7)
    n_plain, rows[:] = sum(rows), []
    cached = drive(MaskedAncestral(path, cache=True), path.prior((B, L)), grid(steps), counted, 7)
    assert sum(rows) == cached.nfe.sum().item() < n_plain == B * steps
    # one call on the all-mask input plus at most one per step that revealed a token
    assert cached.nfe.max().item() <= L + 1
    assert sum(drawn) == B * steps + sum(rows)  # uncached: every row, every step
    assert (cached.x != path.mask_index).all()
    tv_plain, tv_cached = target.tv(plain.x), target.tv(cached.x)
    assert tv_cached < 0.06 and abs(tv_cached - tv_plain) < 0.03, (tv_plain, tv_cached)


def test_first_hitting_is_exact_with_exact_denoiser(target):
    path = MaskedDiffusion(V)
    state = drive(
        FirstHittingSampler(path), path.prior((8000, L)), grid(L), target.masked_denoiser(path), 0
    )
    assert (state.x != path.mask_index).all()
    assert (state.nfe == L).all()
    assert target.tv(state.x) < 0.05  # sampling noise only (exact samples give ~0.03)


def test_first_hitting_time_law():
    """One masked position: the reveal time solves 1 - alpha(tau) = (1 - alpha(1)) u, i.e. tau is
    distributed as alpha^{-1}(1 - (1 - alpha(1)) U)."""
    path = MaskedDiffusion(V, schedule=CosineSchedule())
    solver = FirstHittingSampler(path)
    state = solver.init(path.prior((20000, 1)), 1.0)
    model = lambda z, t: torch.zeros(*z.shape, V)  # noqa: E731
    state = solver.step(state, 1.0, 0.0, model, i=0, n=1, noise=torch.Generator().manual_seed(0))
    one_minus_alpha = 1 - path.alpha(state.t[:, 0])
    u = one_minus_alpha / (1 - path.alpha(torch.tensor(1.0, dtype=torch.float64)))
    assert abs(u.mean().item() - 0.5) < 0.01 and abs((u**2).mean().item() - 1 / 3) < 0.01


def test_confidence_random_order_one_token_per_step_is_exact(target):
    path = MaskedDiffusion(V)
    solver = MaskedConfidence(path, confidence="random")
    state = drive(solver, path.prior((8000, L)), grid(L), target.masked_denoiser(path), 0)
    assert target.tv(state.x) < 0.05


def test_confidence_commits_top_k():
    path = MaskedDiffusion(V)
    solver = MaskedConfidence(path, confidence="prob", temperature=0.0)
    probs = torch.tensor([[0.9, 0.05, 0.05], [0.4, 0.3, 0.3], [0.1, 0.1, 0.8], [0.5, 0.5, 0.0]])
    model = lambda z, t: torch.log(probs).expand(z.shape[0], L, V)  # noqa: E731
    state = solver.init(path.prior((2, L)), 1.0)
    state = solver.step(
        state, 0.75, 0.25, model, i=0, n=2, noise=None
    )  # linear: k = round(4 * 2/3) = 3
    expected = torch.tensor([0, path.mask_index, 2, 0])
    assert torch.equal(state.x, expected.expand(2, L))


def test_remdm_eta_zero_equals_ancestral(target):
    path = MaskedDiffusion(V)
    model = target.masked_denoiser(path)
    a = drive(MaskedAncestral(path), path.prior((500, L)), grid(8), model, 4).x
    b = drive(ReMDMSampler(path, eta=0.0), path.prior((500, L)), grid(8), model, 4).x
    assert torch.equal(a, b)


@pytest.mark.parametrize("strategy", ["cap", "rescale"])
def test_remdm_one_step_transition_probabilities(strategy):
    path = MaskedDiffusion(V)
    eta, t, s = 0.3, 0.6, 0.5
    solver = ReMDMSampler(path, eta=eta, strategy=strategy)
    B = 40000
    x = torch.tensor([0, path.mask_index]).repeat(B, 1)
    model = lambda z, t: torch.zeros(*z.shape, V, dtype=torch.float64)  # noqa: E731
    state = solver.step(
        solver.init(x, t), t, s, model, i=0, n=1, noise=torch.Generator().manual_seed(0)
    )
    a_t, a_s = 1 - (1 - 1e-3) * t, 1 - (1 - 1e-3) * s
    sigma_max = min(1.0, (1 - a_s) / a_t)
    sigma = min(eta, sigma_max) if strategy == "cap" else eta * sigma_max
    remasked = (state.x[:, 0] == path.mask_index).double().mean().item()
    revealed = (state.x[:, 1] != path.mask_index).double().mean().item()
    assert remasked == pytest.approx(sigma, abs=0.01)
    assert revealed == pytest.approx((a_s - (1 - sigma) * a_t) / (1 - a_t), abs=0.01)


def test_remdm_tv_falls_with_steps(target):
    path = MaskedDiffusion(V)
    model = target.masked_denoiser(path)
    tvs = [
        target.tv(drive(ReMDMSampler(path, eta=0.05), path.prior((8000, L)), grid(n), model, 0).x)
        for n in (2, 8)
    ]
    assert tvs[0] > tvs[1] and tvs[1] < 0.15, tvs


def block_schedule(n: int, batch: int) -> torch.Tensor:
    """[2n+1, batch, L] times: block 1 (positions 0-1) goes 1 -> 0 in n steps while block 2 waits
    at t = 1, then block 2 goes 1 -> 0 while block 1 waits at t = 0."""
    ramp = torch.linspace(1.0, 0.0, n + 1, dtype=torch.float64)
    one, zero = torch.ones((), dtype=torch.float64), torch.zeros((), dtype=torch.float64)
    times = [torch.stack([r, r, one, one]) for r in ramp]
    times += [torch.stack([zero, zero, r, r]) for r in ramp[1:]]
    return torch.stack(times).unsqueeze(1).expand(-1, batch, L)


def test_remdm_loop_holds_the_masked_fraction_and_samples_the_target(target):
    """ReMDM-loop (Wang et al. 2025): at t_off the corrector loop has kept the masked fraction at
    its stationary value 1 - alpha_on; the sample at t = 0 follows the exact target."""
    path = MaskedDiffusion(V)
    solver = ReMDMSampler(path, eta=0.05, strategy="loop", t_on=0.5, t_off=0.1, alpha_on=0.8)
    model = target.masked_denoiser(path)
    ts = grid(100)  # t_on and t_off are grid points
    at_t_off = drive(solver, path.prior((8000, L)), ts[:91], model, 0)
    assert (at_t_off.x == path.mask_index).double().mean().item() == pytest.approx(0.2, abs=0.01)
    final = drive(solver, path.prior((8000, L)), ts, model, 1)
    assert (final.x != path.mask_index).all() and target.tv(final.x) < 0.1
    with pytest.raises(ValueError, match="t_off < t_on"):
        ReMDMSampler(path, strategy="loop", t_on=0.1, t_off=0.5)


def test_per_position_time_block_schedule(target):
    """Semi-autoregressive decoding with a time per position (block 2 conditioned on block 1)."""
    path = MaskedDiffusion(V)
    times = list(block_schedule(8, 8000))
    state = drive(
        MaskedAncestral(path), path.prior((8000, L)), times, target.masked_denoiser(path), 0
    )
    assert (state.x != path.mask_index).all()
    assert target.tv(state.x) < 0.12


def test_sample_accepts_paused_per_position_grids_for_masked_ancestral(target):
    """The same block schedule through polydiff.core.sample: block 2 waits at t = 1 (its tokens stay
    masked), then block 1 waits at t = 0 (its tokens stay fixed) while block 2 is decoded."""
    from polydiff.core import sample

    path = MaskedDiffusion(V)
    n = 4
    ts = block_schedule(n, 4000)
    seen = []

    def callback(i, n_steps, t_next, state):
        seen.append(state.x.clone())

    x = sample(
        target.masked_denoiser(path),
        path.prior((4000, L)),
        path=path,
        solver="mdlm",
        grid=ts,
        prediction="logits",
        generator=torch.Generator().manual_seed(0),
        callback=callback,
    )
    assert (seen[n - 1][:, 2:] == path.mask_index).all()  # block 2 paused at t = 1
    assert all(torch.equal(s[:, :2], x[:, :2]) for s in seen[n - 1 :])  # block 1 paused at t = 0
    assert (x != path.mask_index).all() and target.tv(x) < 0.12
    with pytest.raises(ValueError, match="strictly decreasing"):
        sample(lambda z, t: z, torch.zeros(4000, L), path=path, solver="first_hitting", grid=ts)
    with pytest.raises(ValueError, match="every step must decrease"):
        sample(
            target.masked_denoiser(path),
            path.prior((4000, L)),
            path=path,
            solver="mdlm",
            grid=torch.cat([ts[:1], ts]),
            prediction="logits",
        )


def test_gumbel_precision_truncates_the_tail():
    """text.md pitfall, scaled down: a dominant mask (0.95) against a Zipf vocabulary. Low-precision
    uniforms (float16 here: G <= 7.6; float32: G <= 16.6, which bites at LM scale) under-sample rare
    tokens; float64 uniforms reproduce the exact mean -log p of the revealed tokens."""
    Vz = 200
    p = 1.0 / torch.arange(1, Vz + 1, dtype=torch.float64)
    p /= p.sum()
    exact = -(p * p.log()).sum().item()
    w = torch.cat([0.05 * p, torch.tensor([0.95], dtype=torch.float64)]).expand(40000, -1)
    nll = {}
    for dtype in (torch.float16, torch.float64):
        s = sample_categorical(w, torch.Generator().manual_seed(0), probs=True, dtype=dtype)
        nll[dtype] = (-p[s[s < Vz]].log()).mean().item()
    assert abs(nll[torch.float64] - exact) < 0.12  # ~3 standard errors
    assert nll[torch.float16] < exact - 0.5


def test_sample_categorical_matches_probabilities():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05], dtype=torch.float64)
    s = sample_categorical(probs.log().expand(50000, -1), torch.Generator().manual_seed(0))
    freq = torch.bincount(s, minlength=4).double() / 50000
    assert_close(freq, probs, atol=0.01, rtol=0)


def test_top_p_keeps_smallest_nucleus():
    logits = torch.log(torch.tensor([0.1, 0.5, 0.3, 0.1], dtype=torch.float64))
    kept = torch.isfinite(top_p_filter(logits, 0.75))
    assert kept.tolist() == [False, True, True, False]
    assert torch.isfinite(top_p_filter(logits, 0.5)).tolist() == [False, True, False, False]


def test_state_index_reindexes_every_field(target):
    path = MaskedDiffusion(V)
    solver = MaskedAncestral(path)
    state = drive(solver, path.prior((6, L)), grid(2), target.masked_denoiser(path), 0)
    idx = torch.tensor([5, 0, 0])
    sub = state.index(idx)
    assert torch.equal(sub.x, state.x[idx]) and torch.equal(sub.x0_probs, state.x0_probs[idx])
    assert sub.t.shape == (3, L) and torch.equal(sub.t, state.t[idx])
    assert torch.equal(sub.nfe, state.nfe[idx])


def test_mask_index_inside_vocabulary():
    """A tokenizer's [MASK] inside the vocabulary: its logit is ignored, never sampled."""
    path = MaskedDiffusion(4, mask_index=1)
    model = lambda z, t: torch.zeros(*z.shape, 4)  # noqa: E731
    state = drive(MaskedAncestral(path), path.prior((300, L)), grid(3), model, 0)
    assert (state.x != 1).all()


def test_bad_inputs_raise():
    path = MaskedDiffusion(V)
    solver = MaskedAncestral(path)
    state = solver.init(path.prior((2, L)), 1.0)
    with pytest.raises(ValueError, match="logits must have shape"):
        solver.step(state, 1.0, 0.5, lambda z, t: torch.zeros(2, L, V + 1), i=0, n=1)
    with pytest.raises(ValueError, match="time of shape"):
        path.sample_marginal(torch.zeros(2, L, dtype=torch.long), torch.zeros(3))
    with pytest.raises(TypeError, match="noise"):
        solver.step(
            state, 1.0, 0.5, lambda z, t: torch.zeros(2, L, V), i=0, n=1, noise=torch.zeros(2)
        )
    with pytest.raises(ValueError, match="integer tokens"):
        solver.init(torch.full((2, L), 0.5), 1.0)
    with pytest.raises(ValueError, match="exceeds"):
        EnumerableTarget(torch.ones(5**6), 5, 6)
    with pytest.raises(ValueError, match="unknown discrete schedule"):
        MaskedDiffusion(V, schedule="linear")


# ----------------------------------------------------------------------------- the core driver


def test_runs_through_the_core_driver_and_registry(target):
    from polydiff.core import sample
    from polydiff.core.solvers import get_solver, list_solvers

    names = {"mdlm", "mdlm_cached", "remdm", "first_hitting", "confidence", "llada", "udlm"}
    assert names <= set(list_solvers())
    path = MaskedDiffusion(V)
    model = target.masked_denoiser(path)
    x1 = path.prior((6000, L))
    out = sample(
        model,
        x1,
        path=path,
        solver="mdlm",
        steps=16,
        prediction="logits",
        generator=torch.Generator().manual_seed(0),
    )
    assert out.dtype == torch.long and target.tv(out) < 0.1
    # same seed, same draws: the registry's cached variant gives the same samples
    solver = get_solver("mdlm_cached")
    out2, state = sample(
        model,
        x1,
        path=path,
        solver=solver,
        steps=16,
        prediction="logits",
        generator=torch.Generator().manual_seed(0),
        return_state=True,
    )
    assert target.tv(out2) < 0.1 and state.nfe.max().item() <= L + 1
    up = UniformDiffusion(V)
    out = sample(
        target.uniform_denoiser(up),
        up.prior((6000, L), generator=torch.Generator().manual_seed(1)),
        path=up,
        solver="udlm",
        steps=16,
        prediction="logits",
        generator=torch.Generator().manual_seed(0),
    )
    assert target.tv(out) < 0.1
    with pytest.raises(ValueError, match="prediction='logits'"):
        sample(model, x1, path=path, solver="mdlm", steps=2)
    with pytest.raises(ValueError, match="needs a UniformDiffusion"):
        sample(model, x1, path=path, solver="udlm", steps=2, prediction="logits")


def test_gumbels_from_driver_normals_have_the_right_law():
    from polydiff.core import NoiseSource

    probs = torch.tensor([0.5, 0.3, 0.15, 0.05], dtype=torch.float64)
    s = sample_categorical(
        probs.expand(50000, -1), NoiseSource(torch.Generator().manual_seed(0)), probs=True
    )
    freq = torch.bincount(s, minlength=4).double() / 50000
    assert_close(freq, probs, atol=0.01, rtol=0)


def test_udlm_loss_is_minimized_by_the_leave_one_out_denoiser():
    """Exact expectation over x ~ p and z_t ~ q(z_t | x) by enumeration: the UDLM integrand is
    smallest at x_theta = p(x^l | z_t^{-l}), not at the full posterior p(x^l | z_t)."""
    tg = EnumerableTarget.random(3, 3, seed=2)
    path = UniformDiffusion(3)
    t = torch.tensor(0.4, dtype=torch.float64)
    a = path.alpha(t)
    X = tg.configs  # every x and every z_t
    x = X.repeat_interleave(len(X), 0)
    z = X.repeat(len(X), 1)
    q = (a * (x == z) + (1 - a) / 3).prod(-1)  # q(z_t | x)
    weight = tg.probs.repeat_interleave(len(X)) * q
    alpha = a.expand(z.shape)
    loo = torch.log(tg.uniform_posterior(z, alpha, leave_one_out=True))
    full = torch.log(tg.uniform_posterior(z, alpha))
    noise = 0.3 * torch.randn(
        loo.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )

    def expected(logits):
        return (weight * path.loss(logits, x, z, t).sum(-1)).sum().item()

    best = expected(loo)
    assert best < expected(full) - 1e-4
    assert best < expected(loo + noise) - 1e-4


def test_caching_sees_tokens_edited_by_an_xt_hook(target):
    """An x_t hook edits every row after step 5, where the sampler itself changes few rows. The
    cache compares against the tokens the model actually saw, so step 6 re-evaluates every row."""
    from polydiff.core import sample

    path = MaskedDiffusion(V)
    exact = target.masked_denoiser(path)
    calls, hook_calls = [], [0]

    def model(z, t):
        calls.append(z.shape[0])
        return exact(z, t)

    def hook(x, t, noise):
        hook_calls[0] += 1
        if hook_calls[0] != 6:
            return x
        return torch.cat([(x[:, :1] + 1) % V, x[:, 1:]], 1)  # every row's position 0 changes

    B = 300
    x = sample(
        model, path.prior((B, L)), path=path, steps=40, prediction="logits", xt_hook=hook,
        solver="mdlm_cached", generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    assert calls[0] == B and max(calls[1:6]) < B // 2  # few rows change per step early on
    assert calls[6] == B and (x != path.mask_index).all()
