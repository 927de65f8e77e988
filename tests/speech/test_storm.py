"""StoRM: predictive network, diffusion from D(y), the training modes, enhancement."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import polydiff.speech.sgmse as sgmse_mod
from polydiff.speech.audio import SpecConfig
from polydiff.speech.storm import StoRM, StoRMConfig, predictor_config, score_config

TINY_SPEC = SpecConfig(sample_rate=8000, n_fft=62, hop_length=16, frame_multiple=8, beta=0.33)
SMALL = {"nf": 8, "ch_mult": (1, 2, 2)}


def tiny_storm(**changes) -> StoRM:
    torch.manual_seed(0)
    cfg = StoRMConfig(
        spec=TINY_SPEC,
        predictor=dataclasses.replace(predictor_config("micro"), **SMALL),
        score=dataclasses.replace(score_config("micro"), **SMALL),
        **{"N": 3, **changes},
    )
    return StoRM(cfg)


def _pair(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(2, 32, 16, generator=g, dtype=torch.complex64)
    return x0, x0 + 0.3 * torch.randn(2, 32, 16, generator=g, dtype=torch.complex64)


def _grads(module: torch.nn.Module) -> list[bool]:
    return [p.grad is not None and bool(p.grad.abs().sum() > 0) for p in module.parameters()]


def test_paper_defaults():
    cfg = StoRMConfig()
    assert cfg.spec.beta == 0.33 and cfg.a == 0.5 and cfg.mode == "joint"
    assert cfg.predictor.in_channels == 2 and not cfg.predictor.conditional
    assert cfg.score.in_channels == 6 and cfg.score.conditional
    assert cfg.predictor.nf == 128 and cfg.predictor.ch_mult == (1, 2, 2, 2)  # NCSN++M
    assert (cfg.theta, cfg.sigma_min, cfg.sigma_max, cfg.N, cfg.corrector_steps) == (
        1.5,
        0.05,
        0.5,
        20,
        0,
    )


def test_joint_loss_is_weighted_sum_with_mean_drifting_to_the_prediction():
    model = tiny_storm().net
    x0, y = _pair()
    out = model.loss(x0, y, generator=torch.Generator().manual_seed(3))
    d = model.predict(y)
    l_pred = 0.5 * (d - x0).abs().square().sum((1, 2)).mean()
    g = torch.Generator().manual_seed(3)  # by hand: x_t = a x0 + (1 - a) D(y) + sigma z
    t = 0.03 + 0.97 * torch.rand(2, generator=g, dtype=torch.float64)
    z = torch.randn(x0.shape, generator=g, dtype=torch.complex64)
    a, s = torch.exp(-1.5 * t)[:, None, None], model.path.sigma(t)[:, None, None]
    x_t = (a * x0 + (1 - a) * d + s * z).to(torch.complex64)
    score = -model(x_t, y, d, t.float()) / s.float()
    l_score = 0.5 * (s.float() * score + z).abs().square().sum((1, 2)).mean()
    torch.testing.assert_close(out["predictive"], l_pred.detach(), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out["score"], l_score.detach(), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out["loss"], 0.5 * l_pred + 0.5 * l_score, rtol=1e-4, atol=1e-4)
    out["loss"].backward()  # joint: the score term reaches D through the mean and the input
    assert any(_grads(model.predictor)) and any(_grads(model.score_net))


def test_training_modes_route_gradients():
    x0, y = _pair(1)
    model = tiny_storm(mode="predictive").net
    out = model.loss(x0, y)
    assert set(out) == {"loss", "predictive"}
    d = model.predict(y)
    torch.testing.assert_close(out["loss"], 0.5 * (d - x0).abs().square().sum((1, 2)).mean())
    out["loss"].backward()
    assert any(_grads(model.predictor)) and not any(_grads(model.score_net))

    method = tiny_storm(mode="frozen_predictive")
    model = method.net
    out = model.loss(x0, y)
    torch.testing.assert_close(out["loss"], out["score"])  # predictive term is constant
    out["loss"].backward()
    assert not any(_grads(model.predictor)) and any(_grads(model.score_net))
    assert not any(p.requires_grad for p in model.predictor.parameters())
    method.set_mode("joint")  # the method's config follows its network
    assert all(p.requires_grad for p in model.predictor.parameters())
    assert method.config.mode == "joint" and model.cfg.mode == "joint"
    with pytest.raises(ValueError, match="mode"):
        method.set_mode("score_only")
    with pytest.raises(ValueError, match="mode"):
        tiny_storm(mode="denoiser")


def test_linear_is_the_exact_inverse_of_the_compression_with_finite_gradients():
    from polydiff.speech.audio import compress, decompress
    from polydiff.speech.storm import linear

    X = torch.randn(3, 5, 7, dtype=torch.complex128, generator=torch.Generator().manual_seed(2))
    for alpha, beta in ((0.5, 0.33), (0.667, 0.065), (1.0, 1.0)):
        S = compress(X, alpha, beta)
        torch.testing.assert_close(linear(S, alpha, beta), X)
        torch.testing.assert_close(linear(S, alpha, beta), decompress(S, alpha, beta))
    S = torch.zeros(4, dtype=torch.complex64, requires_grad=True)  # silence: no NaN gradient
    linear(S, 0.5, 0.33).abs().square().sum().backward()
    assert torch.isfinite(torch.view_as_real(S.grad)).all()


def test_linear_weight_adds_the_uncompressed_error_to_the_predictive_term():
    from polydiff.speech.storm import linear

    x0, y = _pair(4)
    plain = tiny_storm(mode="predictive").net
    model = tiny_storm(mode="predictive", linear_weight=0.25).net  # the same seeded weights
    out, ref = model.loss(x0, y), plain.loss(x0, y)
    d = model.predict(y)
    lin = 0.5 * (linear(d, 0.5, 0.33) - linear(x0, 0.5, 0.33)).abs().square().sum((1, 2)).mean()
    torch.testing.assert_close(out["linear"], lin.detach())
    torch.testing.assert_close(out["loss"], ref["loss"] + 0.25 * lin, rtol=1e-5, atol=1e-4)
    out["loss"].backward()
    assert any(_grads(model.predictor)) and not any(_grads(model.score_net))
    joint = tiny_storm(linear_weight=0.25).net.loss(x0, y, torch.Generator().manual_seed(0))
    assert set(joint) == {"loss", "predictive", "score", "linear"}
    with pytest.raises(ValueError, match="linear_weight"):
        tiny_storm(linear_weight=-1.0)


def test_inference_starts_at_prediction_plus_sigma1_noise(monkeypatch):
    model = tiny_storm()
    _, y = _pair(2)
    y = torch.cat([y] * 8)  # enough entries to measure the prior's spread
    seen = {}

    def spy(eps_fn, x_init, *, mu, grid, solver_kwargs, **kw):
        seen.update(mu=mu, x_init=x_init, N=len(grid) - 1, c=solver_kwargs["corrector_steps"])
        return mu

    monkeypatch.setattr(sgmse_mod, "sample", spy)  # the core driver StoRM samples through
    model.sample(y, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        d = model.net.predict(y)
    torch.testing.assert_close(seen["mu"], d)
    spread = (seen["x_init"] - d).abs().square().mean().sqrt()
    assert float(spread) == pytest.approx(0.389, rel=0.03)  # sigma(1), E|z|^2 = 1
    assert (seen["N"], seen["c"]) == (3, 0)
    torch.testing.assert_close(model.sample(y, N=0), d)  # predictive only


def test_later_start_draws_sigma_of_t_start_around_the_prediction(monkeypatch):
    model = tiny_storm(t_start=0.4)
    _, y = _pair(2)
    y = torch.cat([y] * 8)
    seen = {}

    def spy(eps_fn, x_init, *, mu, grid, **kw):
        seen.update(x_init=x_init, t_start=float(grid[0]))
        return mu

    monkeypatch.setattr(sgmse_mod, "sample", spy)
    model.sample(y, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        d = model.net.predict(y)
    sigma = float(model.path.sigma(torch.tensor(0.4, dtype=torch.float64)))
    spread = (seen["x_init"] - d).abs().square().mean().sqrt()
    assert seen["t_start"] == 0.4 and float(spread) == pytest.approx(sigma, rel=0.03)
    model.sample(y, t_start=1.0)  # a call overrides the config
    assert seen["t_start"] == 1.0
    with pytest.raises(ValueError, match="t_start"):
        model.sample(y, t_start=0.01)
    with pytest.raises(ValueError, match="unknown enhance option"):
        model.sample(y, steps=3)


def test_nfe_is_one_plus_steps():
    model = tiny_storm()
    calls = {"pred": 0, "score": 0}
    model.net.predictor.register_forward_hook(
        lambda *a: calls.__setitem__("pred", calls["pred"] + 1)
    )
    model.net.score_net.register_forward_hook(
        lambda *a: calls.__setitem__("score", calls["score"] + 1)
    )
    _, y = _pair(3)
    model.sample(y, N=4, corrector_steps=1)
    assert calls == {"pred": 1, "score": 8}
    assert model.nfe(N=4, corrector_steps=1) == 9 and model.nfe(N=0) == 1
    assert model.describe(N=0) == "predictive (storm N=0)" and model.describe() == "storm N=3"


def test_enhance_audio_seeded_and_load_predictor(tmp_path):
    from polydiff.core.io import atomic_save_safetensors

    model = tiny_storm()
    y = (0.1 * np.random.default_rng(0).standard_normal(1000)).astype(np.float32)
    a = model.enhance(y, seed=0)
    assert a.shape == y.shape and np.isfinite(a).all()
    np.testing.assert_array_equal(a, model.enhance(y, seed=0))
    assert not np.allclose(a, model.enhance(y, seed=1))
    p = model.enhance(y, N=0)  # the predictive model alone is deterministic
    np.testing.assert_array_equal(p, model.enhance(y, N=0, seed=5))

    atomic_save_safetensors(tmp_path / "pred" / "model.safetensors", model.net.state_dict())
    other = tiny_storm(mode="frozen_predictive")
    torch.nn.init.zeros_(other.net.predictor.conv_out.weight)
    other.load_predictor(tmp_path / "pred")
    for k, v in model.net.predictor.state_dict().items():
        torch.testing.assert_close(other.net.predictor.state_dict()[k], v)
    with pytest.raises(ValueError, match="predictor"):
        atomic_save_safetensors(tmp_path / "score.safetensors", model.net.score_net.state_dict())
        other.load_predictor(tmp_path / "score.safetensors")
    with pytest.raises(FileNotFoundError):
        other.load_predictor(tmp_path / "missing")


def test_config_round_trip():
    cfg = tiny_storm().config
    assert StoRMConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="in_channels=2"):
        dataclasses.replace(cfg, predictor=score_config("micro"))
    with pytest.raises(ValueError, match="a must be"):
        dataclasses.replace(cfg, a=1.5)


def test_losses_run_under_mixed_precision_autocast():
    # fit() picks bf16-mixed on GPUs: the nets then return bf16, which torch.complex rejects
    from polydiff.speech.sgmse import SGMSE, SGMSEConfig

    x0, y = _pair(4)
    sgmse = SGMSE(
        SGMSEConfig(
            spec=TINY_SPEC, net=dataclasses.replace(score_config("micro"), in_channels=4, **SMALL)
        )
    )
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for loss in (tiny_storm().net.loss(x0, y)["loss"], sgmse.net.loss(x0, y)):
            assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_predictive_training_steps_reduce_the_loss():
    model = tiny_storm(mode="predictive").net
    x0, y = _pair(5)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    losses = []
    for _ in range(15):
        loss = model.loss(x0, y)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < 0.7 * losses[0]


def test_default_N_0_makes_the_predictive_network_the_default_sampler():
    # the shipped StoRM's config uses N = 0 (selected on validation clips): D(y), 1 NFE
    model = tiny_storm(N=0)
    calls = {"score": 0}
    model.net.score_net.register_forward_hook(
        lambda *a: calls.__setitem__("score", calls["score"] + 1)
    )
    _, y = _pair(4)
    torch.testing.assert_close(model.sample(y), model.net.predict(y))
    assert calls["score"] == 0
    assert StoRMConfig.from_dict(model.config.to_dict()).N == 0
    with pytest.raises(ValueError, match="N >= 0"):
        tiny_storm(N=-1)
    with pytest.raises(ValueError, match="N >= 1"):  # SGMSE+ has no predictive stage
        sgmse_mod.SGMSEConfig(N=0)
