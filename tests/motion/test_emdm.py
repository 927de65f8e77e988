"""EMDM (denoising-diffusion GAN): the forward pairs and the posterior step against the path's
Gaussians, a tiny training run, few-step sampling, save/load."""

from dataclasses import replace
from pathlib import Path

import pytest
import torch

import polydiff.motion.mdm as mdm_module
from polydiff.core import VPCosine, VPLinear, load_method
from polydiff.core.errors import InputError
from polydiff.motion.emdm import EMDMConfig, MotionDDGAN, init_generator, load_emdm
from polydiff.motion.mdm import MDMConfig, MotionDiffusion, load_mdm


def tiny(dataset, **changes):
    torch.manual_seed(0)
    options = dict(frames=16, d_model=32, n_layers=1, n_heads=2, disc_layers=1, latent_dim=8)
    method = MotionDDGAN(EMDMConfig(**(options | changes)))
    method.set_normalizer(dataset.normalizer)
    return method


@pytest.mark.parametrize("k", [1, 2, 4])
def test_posterior_step_is_the_paths_posterior_and_fits_the_forward_pairs(dataset, k):
    method = tiny(dataset)
    path, times = VPLinear(), torch.linspace(0, 1, 5, dtype=torch.float64)
    g = torch.Generator().manual_seed(k)
    x0 = torch.randn(3, 16, 263, generator=g)
    x_t, noise = torch.randn(x0.shape, generator=g), torch.randn(x0.shape, generator=g)
    step = method.posterior_step(x_t, x0, torch.tensor(k), noise)
    mean, std = path.posterior(x_t, x0, times[k], times[k - 1])
    assert torch.allclose(step, mean + std.float() * noise, atol=1e-6)
    # Bayes by hand: x_s ~ N(a_s x0, s_s^2), x_t | x_s ~ N(a x_s, v) with a = a_t / a_s
    a_t, a_s = path.alpha(times[k]), path.alpha(times[k - 1])
    s_t, s_s = path.sigma(times[k]), path.sigma(times[k - 1])
    a, v = a_t / a_s, s_t**2 - (a_t / a_s) ** 2 * s_s**2
    precision = 1 / v * a**2 + (1 / s_s**2 if k > 1 else float("inf"))
    if k > 1:
        by_hand = (a / v * x_t.double() + a_s / s_s**2 * x0.double()) / precision
        assert torch.allclose(mean.double(), by_hand, atol=1e-5)
        assert float(std.flatten()[0]) == pytest.approx(float(precision.rsqrt()), rel=1e-6)
    else:  # the last step lands on x0 itself
        assert torch.allclose(step, x0, atol=1e-6)
    # the forward pairs: regressing x_{k-1} on x_k (x0 fixed) gives the posterior's slope,
    # intercept and residual spread
    one = torch.full((40000, 1, 1), 0.7)
    x_prev, x_next = method.real_pair(
        one, torch.full((40000,), k), torch.Generator().manual_seed(0)
    )
    assert torch.allclose(x_prev.mean(), a_s.float() * 0.7, atol=0.02)
    assert float(x_next.std()) == pytest.approx(float(s_t), rel=0.03)
    if k > 1:
        slope = torch.cov(torch.stack([x_prev.flatten(), x_next.flatten()]))[0, 1] / x_next.var()
        residual = x_prev.flatten() - slope * x_next.flatten()
        intercept = x_prev.mean() - slope * x_next.mean()
        assert float(slope) == pytest.approx(float(a * s_s**2 / s_t**2), abs=0.02)
        assert float(intercept) == pytest.approx(float(a_s * v / s_t**2 * 0.7), abs=0.02)
        assert float(residual.std()) == pytest.approx(float(std.flatten()[0]), rel=0.03)


def test_tiny_training_lowers_the_generator_and_discriminator_losses(dataset):
    method = tiny(dataset)
    batch = {"x": dataset.features, "action": dataset.actions}

    def fixed_losses():
        with torch.no_grad(), torch.enable_grad():  # R1 needs a gradient
            generator = torch.Generator().manual_seed(1)
            losses = method.loss_fn(method.net, batch, generator=generator)
        return float(losses["generator"].detach()), float(losses["discriminator"].detach())

    def train(parameters, steps):
        optimizer = torch.optim.Adam(parameters, lr=2e-3, betas=(0.5, 0.9))
        generator = torch.Generator().manual_seed(2)
        for _ in range(steps):
            index = torch.randint(0, len(dataset), (16,), generator=generator)
            part = {"x": dataset.features[index], "action": dataset.actions[index]}
            loss = method.loss_fn(method.net, part, generator=generator)["loss"]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    generator_before = fixed_losses()[0]
    train(method.net.parameters(), 60)  # the GAN game: both networks at once
    generator_after, discriminator_before = fixed_losses()
    assert generator_after < 0.7 * generator_before
    # against a fixed generator the discriminator learns to tell its pairs from real ones
    train(method.net.discriminator.parameters(), 40)
    assert fixed_losses()[1] < 0.9 * discriminator_before


def test_each_loss_reaches_only_its_own_network(dataset):
    method = tiny(dataset)
    batch = {"x": dataset.features[:4], "action": dataset.actions[:4]}
    losses = method.loss_fn(method.net, batch, generator=torch.Generator().manual_seed(0))
    disc = list(method.net.discriminator.parameters())
    gen = list(method.net.generator.parameters())
    from_generator = torch.autograd.grad(losses["generator"], disc, allow_unused=True)
    assert all(g is None or g.abs().max() == 0 for g in from_generator)
    from_discriminator = torch.autograd.grad(losses["discriminator"], gen, allow_unused=True)
    assert all(g is None or g.abs().max() == 0 for g in from_discriminator)


def test_the_discriminator_gets_its_own_learning_rate_through_train_mdm(
    dataset, tmp_path, monkeypatch
):
    import polydiff.core.train as core_train

    method, made = tiny(dataset), []

    def record(module, *args, **kwargs):  # stop before training: the optimiser is what counts
        made.append(module.configure_optimizers()["optimizer"])
        raise RuntimeError("stop")

    monkeypatch.setattr(core_train, "fit", record)
    scales = {"discriminator.": 6.25}  # EMDM's lr_d / lr_g (1.25e-4 / 2e-5)
    with pytest.raises(RuntimeError, match="stop"):
        mdm_module.train_mdm(method, dataset, tmp_path, max_steps=1, lr=2e-5, lr_scales=scales)
    groups = sorted(made[0].param_groups, key=lambda group: group["lr"])
    assert [group["lr"] for group in groups] == pytest.approx([2e-5, 1.25e-4])
    for group, net in zip(groups, (method.net.generator, method.net.discriminator), strict=True):
        assert {id(p) for p in group["params"]} == {id(p) for p in net.parameters()}


def test_few_step_sampling_guidance_and_save_load(dataset, tmp_path):
    method = tiny(dataset, steps=3)
    torch.nn.init.normal_(method.net.generator.action.weight)  # labels must matter
    seed = torch.Generator().manual_seed
    features = method.sample(["walk", "jump"], guidance=2.0, generator=seed(0))
    assert features.shape == (2, 16, 263) and torch.isfinite(features).all()
    assert method.positions(features).shape == (2, 16, 22, 3)
    plain = method.sample(["walk", "jump"], generator=seed(0))
    assert not torch.allclose(plain, features)
    calls = []
    method.net.generator.register_forward_hook(lambda *args: calls.append(1))
    method.sample(["walk"], generator=seed(0))
    assert len(calls) == 3  # one generator call per step
    folder = method.save(tmp_path / "emdm")
    again = load_method(folder)  # the generator alone: the discriminator is dropped at export
    assert isinstance(again, MotionDDGAN) and again.net.discriminator is None
    assert again.config == replace(method.config, discriminator=False)
    assert not any(k.startswith("discriminator") for k in again.net.state_dict())
    assert torch.equal(again.sample(["walk", "jump"], guidance=2.0, generator=seed(0)), features)
    with pytest.raises(InputError, match="generator-only EMDM export cannot be trained"):
        again.loss_fn(again.net, {"x": dataset.features[:2], "action": dataset.actions[:2]})
    assert isinstance(load_mdm(folder), MotionDDGAN)  # the CLI's loader takes it too
    with pytest.raises(InputError, match="samples in its training's 3 steps, not 50"):
        method.sample(["walk"], steps=50)


def test_shipped_checkpoint_samples_in_its_eight_steps(dataset):
    method = load_emdm()
    assert method.config.steps == 8 and method.config.d_model == 128
    assert method.net.discriminator is None  # a generator-only export
    features = method.sample(["walk", "idle"], generator=torch.Generator().manual_seed(0))
    assert features.shape == (2, 40, 263) and torch.isfinite(features).all()
    with pytest.raises(InputError, match="not an EMDM model"):
        load_emdm(Path(mdm_module.__file__).parent / "checkpoints" / "mdm-procedural")


def test_an_mdm_starts_the_generator_at_equal_noise_levels(dataset):
    """With mdm_time the generator reads each level as the cosine time of equal log-SNR, so an
    MDM denoiser's weights give the same x0 at that noise level, whatever the latent."""
    torch.manual_seed(3)
    sizes = dict(frames=16, d_model=32, n_layers=1, n_heads=2, dropout=0.0)
    mdm = MotionDiffusion(MDMConfig(**sizes))
    mdm.set_normalizer(dataset.normalizer)
    for block in mdm.net.blocks:  # adaLN-Zero starts every block as the identity
        torch.nn.init.normal_(block.modulation.weight, std=0.1)
    method = MotionDDGAN(EMDMConfig(**sizes, latent_dim=8, steps=4, mdm_time=True))
    with pytest.raises(InputError, match="must be true"):
        init_generator(tiny(dataset), mdm)
    init_generator(method, mdm)
    linear, cosine = VPLinear(), VPCosine()
    for k in range(1, 5):
        t = method.net_times[k]
        assert float(cosine.log_snr(t)) == pytest.approx(float(linear.log_snr(method.times[k])))
    mdm.net.eval()
    method.net.eval()
    x, labels = torch.randn(3, 16, 263), torch.tensor([0, 2, 7])
    t = method.net_times[2].float()
    with torch.no_grad():
        expected = mdm.net(x, t, labels)
        for seed in range(2):
            z = torch.randn(3, 8, generator=torch.Generator().manual_seed(seed))
            assert torch.allclose(method.net.generator(x, t, labels, z), expected, atol=1e-6)
    bigger = MotionDiffusion(MDMConfig(**{**sizes, "d_model": 64}))
    with pytest.raises(InputError, match="differs in size"):
        init_generator(MotionDDGAN(EMDMConfig(**sizes, latent_dim=8, mdm_time=True)), bigger)


def test_lazy_r1_applies_the_scaled_penalty_on_a_random_share_of_steps(dataset):
    batch = {"x": dataset.features[:4], "action": dataset.actions[:4]}
    every, lazy = tiny(dataset), tiny(dataset, r1_every=4)
    applied = 0
    for seed in range(24):
        full = every.loss_fn(every.net, batch, generator=torch.Generator().manual_seed(seed))
        some = lazy.loss_fn(lazy.net, batch, generator=torch.Generator().manual_seed(seed))
        if float(some["r1"]) == 0:
            continue
        applied += 1
        assert float(some["r1"]) == pytest.approx(4 * float(full["r1"]), rel=1e-5)
        assert float(full["r1"]) > 0
    assert 2 <= applied <= 12  # about a quarter of 24
