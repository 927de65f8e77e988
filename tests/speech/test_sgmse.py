"""SGMSE+: golden values, the samplers against the exact score of Gaussian data, loss, enhance."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from polydiff.core.paths import OUVE
from polydiff.speech.audio import SpecConfig
from polydiff.speech.nets import PRESETS
from polydiff.speech.sgmse import (
    SGMSE,
    SGMSEConfig,
    ode_sample,
    pc_grid,
    pc_sample,
    real_time,
    sgmse_48k_config,
)

# A tiny spectrogram (32 bins at 8 kHz) and network keep every test to seconds on one thread.
TINY_SPEC = SpecConfig(sample_rate=8000, n_fft=62, hop_length=16, frame_multiple=8)
TINY_NET = dataclasses.replace(PRESETS["micro"], nf=8, ch_mult=(1, 2, 2))


def tiny_sgmse(**changes) -> SGMSE:
    torch.manual_seed(0)
    return SGMSE(SGMSEConfig(spec=TINY_SPEC, net=TINY_NET, N=3, **changes))


def test_ouve_golden_values_and_paper_defaults():
    cfg = SGMSEConfig()
    assert (cfg.theta, cfg.sigma_min, cfg.sigma_max, cfg.t_eps) == (1.5, 0.05, 0.5, 0.03)
    assert (cfg.N, cfg.snr, cfg.corrector_steps) == (30, 0.5, 1)
    assert (cfg.spec.n_fft, cfg.spec.hop_length, cfg.spec.alpha, cfg.spec.beta) == (
        510,
        128,
        0.5,
        0.15,
    )
    assert cfg.net.nf == 128 and cfg.net.in_channels == 4
    path = SGMSE(SGMSEConfig(spec=TINY_SPEC, net=TINY_NET)).path
    one = torch.tensor(1.0, dtype=torch.float64)
    assert float(path.sigma(one)) == pytest.approx(0.389, abs=5e-4)
    assert float(path.alpha(one)) == pytest.approx(0.223, abs=5e-4)  # leftover weight on x0
    # g(t)^2 of the paper equals the core path's diffusion coefficient
    t = torch.linspace(0.03, 1, 7, dtype=torch.float64)
    torch.testing.assert_close(path.diffusion2(t), path.g(t) ** 2)


def test_48k_recipe():
    cfg = sgmse_48k_config(net=TINY_NET)
    assert (cfg.spec.sample_rate, cfg.spec.n_fft, cfg.spec.hop_length) == (48000, 1534, 384)
    assert (cfg.theta, cfg.sigma_min, cfg.sigma_max) == (2.0, 0.1, 1.0)
    assert sgmse_48k_config().net.nf == 128  # 768 bins fit the full NCSN++'s 64-fold downsampling


def test_pc_grid_is_sgmse_linspace_then_zero():
    grid = pc_grid(30)
    assert grid.shape == (31,)
    torch.testing.assert_close(grid[:30], torch.linspace(1, 0.03, 30, dtype=torch.float64))
    assert grid[-1] == 0
    with pytest.raises(ValueError, match="N must be"):
        pc_grid(0)
    late = pc_grid(10, t_start=0.5)  # a later start keeps the SGMSE spacing rule
    torch.testing.assert_close(late[:10], torch.linspace(0.5, 0.03, 10, dtype=torch.float64))
    with pytest.raises(ValueError, match="t_start"):
        pc_grid(10, t_start=0.02)  # below t_eps the grid would run backwards


# ---------------------------------------------------------------------- exact-score ground truth
# Clean data x0 ~ CN(m0, s0^2) entrywise (E|x0 - m0|^2 = s0^2) and a fixed noisy y: the OUVE
# marginal is CN(a m0 + (1 - a) y, a^2 s0^2 + sigma^2) with a = e^{-theta t}, so the score and
# the noise prediction eps = sigma (x - m_t) / v_t are closed form.

SHAPE = (16, 32, 64)
S0 = 0.3


class Gaussian:
    def __init__(self, path: OUVE, seed: int = 1) -> None:
        g = torch.Generator().manual_seed(seed)
        self.path = path
        self.m0 = 0.5 * torch.randn(SHAPE, generator=g, dtype=torch.complex128)
        self.y = self.m0 + 0.5 * torch.randn(SHAPE, generator=g, dtype=torch.complex128)
        self.calls = 0

    def stats(self, t: float | torch.Tensor):
        t = torch.as_tensor(t, dtype=torch.float64)
        a, s = self.path.alpha(t), self.path.sigma(t)
        return a * self.m0 + (1 - a) * self.y, a**2 * S0**2 + s**2, s

    def eps(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        m, v, s = self.stats(real_time(t, x).double()[0])
        return (s * (x - m) / v).to(x.dtype)

    def exact_prior(self, g: torch.Generator) -> torch.Tensor:
        m, v, _ = self.stats(1.0)
        return m + v.sqrt() * torch.randn(SHAPE, generator=g, dtype=torch.complex128)

    def pc_limit(self, t_eps: float = 0.03):
        """Output law of the PC sampler as N -> inf: the marginal at t_eps, then the last
        predictor mean x + t_eps (-f x + g^2 score) (linear in x: A (x - y) + B + y)."""
        m, v, _ = self.stats(t_eps)
        t = torch.tensor(t_eps, dtype=torch.float64)
        g2, c = self.path.diffusion2(t), m - self.y
        A = 1 + t_eps * self.path.theta - t_eps * g2 / v
        return self.y + A * c + t_eps * g2 * c / v, A**2 * v


def _moments(x: torch.Tensor, mean: torch.Tensor) -> tuple[float, float]:
    d = x - mean
    return float(d.mean().abs()), float(d.abs().square().mean())


def test_pc_sampler_with_exact_score_converges_to_the_exact_law():
    gauss = Gaussian(OUVE())
    mean_lim, var_lim = gauss.pc_limit()
    var_errors = {}
    for N in (3, 100):
        g = torch.Generator().manual_seed(2)
        x = pc_sample(gauss.eps, gauss.y, gauss.path, N, x_init=gauss.exact_prior(g), generator=g)
        mean_err, var = _moments(x, mean_lim)
        var_errors[N] = abs(var / float(var_lim) - 1)
        if N == 100:
            assert mean_err < 0.006  # Monte Carlo std ~0.0012
            assert var_errors[N] < 0.03  # Monte Carlo relative std ~0.004
            # ... which is the clean distribution up to the t_eps truncation
            assert _moments(x, gauss.m0)[1] == pytest.approx(S0**2, rel=0.05)
    assert var_errors[3] > 3 * var_errors[100]


def test_pc_sampler_from_a_later_start_reaches_the_same_law():
    # Started from the exact marginal at t_start = 0.4 instead of t = 1, the reverse SDE has
    # less to integrate but must end in the same law as N -> inf (the PC limit at t_eps).
    gauss = Gaussian(OUVE())
    mean_lim, var_lim = gauss.pc_limit()
    m, v, _ = gauss.stats(0.4)
    g = torch.Generator().manual_seed(6)
    x_init = m + v.sqrt() * torch.randn(SHAPE, generator=g, dtype=torch.complex128)
    x = pc_sample(gauss.eps, gauss.y, gauss.path, 100, t_start=0.4, x_init=x_init, generator=g)
    mean_err, var = _moments(x, mean_lim)
    assert mean_err < 0.006 and var / float(var_lim) == pytest.approx(1, abs=0.03)
    times = []
    pc_sample(
        lambda x, t: times.append(float(real_time(t, x)[0])) or gauss.eps(x, t),
        gauss.y, gauss.path, 5, t_start=0.4, corrector_steps=0,
    )  # fmt: skip
    assert times == pytest.approx(np.linspace(0.4, 0.03, 5).tolist())


def test_pc_sampler_uses_two_evaluations_per_step_and_is_seeded():
    gauss = Gaussian(OUVE())
    g = torch.Generator().manual_seed(0)
    a = pc_sample(gauss.eps, gauss.y, gauss.path, 7, generator=g)
    assert gauss.calls == 14  # NFE = 2N
    b = pc_sample(gauss.eps, gauss.y, gauss.path, 7, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    gauss.calls = 0
    pc_sample(gauss.eps, gauss.y, gauss.path, 7, corrector_steps=0)
    assert gauss.calls == 7


def test_sgmse_prior_mismatch_bias_matches_linear_theory():
    # Starting from y + sigma(1) z ignores the leftover e^{-theta} (m0 - y) of the true mean at
    # t = 1. Along the reverse dynamics a mean offset d obeys d' = (f + g^2 / v) d, so (with
    # g^2 = v' - 2 f v) it reaches t_eps as d(1) v(t_eps) / v(1) e^{-theta (1 - t_eps)}; the
    # last predictor step scales it by A. Predictor only, so no corrector shrinks it further.
    path = OUVE()
    gauss = Gaussian(path, seed=3)
    t_eps = 0.03
    _, v1, _ = gauss.stats(1.0)
    _, ve, _ = gauss.stats(t_eps)
    mean_lim, var_lim = gauss.pc_limit(t_eps)
    A = (var_lim / ve).sqrt()
    beta = -math.exp(-path.theta) * ve / v1 * math.exp(-path.theta * (1 - t_eps)) * A
    g = torch.Generator().manual_seed(4)
    x = pc_sample(gauss.eps, gauss.y, path, 200, corrector_steps=0, generator=g)
    u = gauss.m0 - gauss.y
    beta_hat = (torch.sum(u.conj() * (x - mean_lim)).real / u.abs().square().sum()).item()
    assert float(beta) == pytest.approx(-0.029, abs=0.002)
    assert beta_hat == pytest.approx(float(beta), abs=0.008)  # Monte Carlo std ~0.002


def test_ode_sampler_transports_the_exact_marginal():
    # The probability-flow ODE of a Gaussian maps x - m_t linearly by the std ratio.
    gauss = Gaussian(OUVE())
    x1 = gauss.exact_prior(torch.Generator().manual_seed(5))
    m1, v1, _ = gauss.stats(1.0)
    me, ve, _ = gauss.stats(0.03)
    exact = me + (ve / v1).sqrt() * (x1 - m1)
    errors = [
        float((ode_sample(gauss.eps, gauss.y, gauss.path, n, x_init=x1) - exact).abs().max())
        for n in (5, 30)
    ]
    assert errors[1] < 2e-3 and errors[0] > 5 * errors[1]
    heun = ode_sample(gauss.eps, gauss.y, gauss.path, 30, x_init=x1, solver="heun")
    assert float((heun - exact).abs().max()) < 5e-3


# ---------------------------------------------------------------------- the model


def test_score_is_minus_network_over_sigma_and_loss_is_score_matching():
    model = tiny_sgmse().net
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, 32, 16, generator=g, dtype=torch.complex64)
    y = x0 + 0.3 * torch.randn(2, 32, 16, generator=g, dtype=torch.complex64)
    t = torch.tensor([0.2, 0.9])
    sigma = model.path.sigma(t.double()).float()
    torch.testing.assert_close(model.score(x0, y, t), -model(x0, y, t) / sigma[:, None, None])

    loss = model.loss(x0, y, generator=torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)  # the same draws, by hand: t ~ U[0.03, 1], z ~ CN(0, 1)
    t = 0.03 + 0.97 * torch.rand(2, generator=g, dtype=torch.float64)
    z = torch.randn(x0.shape, generator=g, dtype=torch.complex64)
    a, s = torch.exp(-1.5 * t)[:, None, None], model.path.sigma(t)[:, None, None]
    x_t = (a * x0 + (1 - a) * y + s * z).to(torch.complex64)
    score = model.score(x_t, y, t.float())
    expected = 0.5 * (s.float() * score + z).abs().square().sum((1, 2)).mean()
    torch.testing.assert_close(loss, expected, rtol=1e-4, atol=1e-4)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_enhance_is_seeded_shaped_finite_and_works_on_long_and_stereo_audio():
    model = tiny_sgmse()
    rng = np.random.default_rng(0)
    y = (0.1 * rng.standard_normal(1200)).astype(np.float32)
    a = model.enhance(y, seed=0)
    assert a.shape == y.shape and a.dtype == np.float32 and np.isfinite(a).all()
    np.testing.assert_array_equal(a, model.enhance(y, seed=0))
    assert not np.allclose(a, model.enhance(y, seed=1))
    assert model.enhance(y, seed=0, sampler="ode").shape == y.shape
    # longer than a chunk: overlap-add over 3 chunks; stereo channels enhanced independently
    long = (0.1 * rng.standard_normal((2, 4000))).astype(np.float32)
    out = model.enhance(long, seed=0, chunk_seconds=0.2, margin_seconds=0.03, fade_seconds=0.03)
    assert out.shape == long.shape and np.isfinite(out).all()
    # another input rate: resampled in and back, same length
    out16 = model.enhance(np.tile(y, 2), sample_rate=16000, seed=0)
    assert out16.shape == (2400,) and np.isfinite(out16).all()
    assert model.net.training  # the caller's mode is restored (eval inside)


def test_enhance_bad_input_errors():
    model = tiny_sgmse()
    with pytest.raises(ValueError, match="too short"):
        model.enhance(np.ones(20, dtype=np.float32))
    with pytest.raises(ValueError, match="expected"):
        model.enhance(np.ones((1, 2, 300), dtype=np.float32))
    with pytest.raises(ValueError, match="NaN"):
        model.enhance(np.full(500, np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match="sampler"):
        model.enhance(np.ones(500, dtype=np.float32) * 0.1, sampler="rk45")
    np.testing.assert_array_equal(model.enhance(np.zeros(500, dtype=np.float32)), 0)  # silence


def test_config_round_trip_and_validation():
    cfg = SGMSEConfig(spec=TINY_SPEC, net=TINY_NET, N=5)
    d = cfg.to_dict()
    assert SGMSEConfig.from_dict(json.loads(json.dumps(d))) == cfg  # JSON lists back to tuples
    with pytest.raises(ValueError, match="unknown SGMSEConfig fields"):
        SGMSEConfig.from_dict({**d, "steps": 3})
    with pytest.raises(ValueError, match="in_channels=4"):
        SGMSEConfig(spec=TINY_SPEC, net=dataclasses.replace(TINY_NET, in_channels=6))
    with pytest.raises(ValueError, match="multiples"):
        SGMSEConfig(spec=dataclasses.replace(TINY_SPEC, frame_multiple=2), net=TINY_NET)
    with pytest.raises(ValueError, match="t_eps"):
        SGMSEConfig(spec=TINY_SPEC, net=TINY_NET, t_eps=0.0)
    for bad in (0.03, 1.5):
        with pytest.raises(ValueError, match="t_start"):
            SGMSEConfig(spec=TINY_SPEC, net=TINY_NET, t_start=bad)
    old = {k: v for k, v in d.items() if k != "t_start"}  # config.json written before t_start
    assert SGMSEConfig.from_dict(old).t_start == 1.0


def test_methods_by_name_from_presets():
    from polydiff.speech import build_method, speech_methods
    from polydiff.speech.sgmse import with_changes

    assert speech_methods() == ["sgmse", "storm"]
    # None keeps the preset's value; lists (YAML, JSON) become tuples
    assert with_changes(TINY_NET, {"ch_mult": [1, 2], "nf": None}) == dataclasses.replace(
        TINY_NET, ch_mult=(1, 2)
    )
    method = build_method("sgmse", spec_changes={"sample_rate": 8000, "n_fft": 62,
        "hop_length": 16, "frame_multiple": 8}, net_changes={"nf": 8, "ch_mult": [1, 2, 2]},
        N=4)  # fmt: skip
    assert isinstance(method, SGMSE) and method.config.net == TINY_NET
    assert method.config.spec == TINY_SPEC and method.config.N == 4
    with pytest.raises(ValueError, match="unknown speech method 'bbed'; known: sgmse, storm"):
        build_method("bbed")
    with pytest.raises(ValueError, match=r"unknown NCSN\+\+ preset"):
        build_method("sgmse", net="huge")
    with pytest.raises(ValueError, match="steps"):
        build_method("sgmse", steps=3)


def test_training_steps_reduce_the_loss_on_a_fixed_draw():
    # the loss and its gradient are wired to the right parameters: Adam on one fixed batch and
    # fixed (t, z) draws must lower it
    model = tiny_sgmse().net
    x0 = torch.randn(2, 32, 16, generator=torch.Generator().manual_seed(0), dtype=torch.complex64)
    y = 0.5 * x0
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = model.loss(x0, y, generator=torch.Generator().manual_seed(1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < 0.75 * losses[0]  # measured: 313 -> 195
