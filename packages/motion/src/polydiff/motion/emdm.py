"""EMDM-style few-step motion generation (Zhou et al., "EMDM: Efficient Motion Diffusion Model
for Fast and High-Quality Motion Generation", ECCV 2024): a conditional denoising-diffusion GAN
(Xiao et al., "Tackling the Generative Learning Trilemma with Denoising Diffusion GANs", ICLR 2022)
on the 263-d features, sampled in ``steps`` (2-4) large steps.

The diffusion has ``steps`` levels ``t_k = k / steps`` of the VP path with linear beta (DDGAN's
schedule, the core's `VPLinear`). At level k the generator predicts the clean motion
``x0' = G(x_k, t_k, z, action)`` from the noisy window, a 64-d latent ``z`` and the label, and
the next sample is drawn from the path's Gaussian posterior ``q(x_{k-1} | x_k, x0')``: the
denoising distribution may be multimodal, which a few large Gaussian steps cannot model. A
time-conditioned discriminator ``D(x_{k-1}, x_k, t_k, action)`` tells real pairs (the forward
process) from generated ones; losses are DDGAN's non-saturating softplus with an R1 penalty on
real pairs, and the generator's x0' also gets MDM's reconstruction and geometric losses
(positions, velocities, foot contact), as EMDM adds them.

Training uses one optimiser over both networks: the discriminator's loss sees the fake pairs
detached, and the generator's adversarial loss calls the discriminator with detached weights
(`torch.func.functional_call`), so each loss moves only its own network and one backward pass
makes a simultaneous GAN step; the core's `DiffusionModule` and `fit` therefore train it
(checkpoints, resume, EMA) exactly as they train MDM (`train_mdm`).

With ``mdm_time`` the generator reads each level as the VP-cosine time of equal log-SNR, MDM's
own convention, so a trained MDM denoiser can start the generator (`init_generator`; its latent
layer starts at zero, so the untrained GAN samples exactly like that denoiser in 4 large
ancestral steps). `MotionDDGAN.save` writes the generator only: the discriminator serves
training alone (the run's Lightning checkpoints keep it for resuming).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel

from polydiff.core import Method, VPCosine, VPLinear, register_method
from polydiff.core.errors import InputError
from polydiff.motion.features import FeatureLayout
from polydiff.motion.mdm import MDMConfig, MotionDenoiser, MotionDiffusion, load_kind


@dataclass
class EMDMConfig(MDMConfig):
    steps: int = 4  # denoising steps of sampling (the GAN's diffusion levels)
    latent_dim: int = 64  # the generator's latent z
    disc_layers: int = 2  # transformer blocks of the discriminator
    adversarial_weight: float = 0.1  # of the generator's adversarial loss
    reconstruction_weight: float = 1.0  # of the x0 MSE of the generator
    r1_gamma: float = 0.02  # R1 penalty gamma (the loss adds gamma / 2 |grad D(real)|^2)
    r1_every: int = 1  # lazy R1: on a random 1 / r1_every of the steps, times r1_every
    dropout: float = 0.0
    mdm_time: bool = False  # the generator reads MDM's (VP-cosine) time of equal log-SNR
    discriminator: bool = True  # False: a generator-only export (samples, cannot train)


def _mdm_fields(config: EMDMConfig) -> dict:
    """The MDM part of an EMDM config (the discriminator's trunk)."""
    names = MDMConfig.__dataclass_fields__
    return {k: v for k, v in config.to_dict().items() if k in names}


class EMDMNet(nn.Module):
    """The generator (a `MotionDenoiser` with a latent, holding the normaliser buffers) and the
    discriminator (the same trunk on the concatenated pair, one logit per frame, averaged)."""

    def __init__(self, config: EMDMConfig) -> None:
        super().__init__()
        dim = FeatureLayout(config.n_joints).dim
        self.generator = MotionDenoiser(config, latent_dim=config.latent_dim)
        disc = MDMConfig(**{**_mdm_fields(config), "n_layers": config.disc_layers})
        self.discriminator = (
            MotionDenoiser(disc, in_dim=2 * dim, out_dim=1) if config.discriminator else None
        )

    @property
    def mean(self) -> Tensor:
        return self.generator.mean

    @property
    def std(self) -> Tensor:
        return self.generator.std

    def forward(self, x: Tensor, t: Tensor, action: Tensor, z: Tensor) -> Tensor:
        return self.generator(x, t, action, z)


def discriminate(
    discriminator: nn.Module,
    x_prev: Tensor,
    x_t: Tensor,
    t: Tensor,
    action: Tensor,
    *,
    frozen: bool = False,
) -> Tensor:
    """One logit per pair ``[B]``: the mean of the per-frame outputs; ``frozen``: with the
    weights detached, so gradients reach the inputs only."""
    pair = torch.cat([x_prev, x_t], -1)
    if not frozen:
        return discriminator(pair, t, action).mean((-1, -2))
    weights = {n: p.detach() for n, p in discriminator.named_parameters()}
    weights |= dict(discriminator.named_buffers())
    return functional_call(discriminator, weights, (pair, t, action)).mean((-1, -2))


@register_method
class MotionDDGAN(MotionDiffusion):
    """EMDM on the 263-d features: ``sample(actions)`` takes ``config.steps`` generator calls
    (twice that with classifier-free guidance)."""

    domain, name, config_class = "motion", "emdm", EMDMConfig
    default_guidance = 1.0  # CFG scale when none is given (validation: CFG raised skating, FID)

    def __init__(self, config: EMDMConfig, net: nn.Module | None = None) -> None:
        super().__init__(config, net)
        self.path = VPLinear()
        self.times = torch.linspace(0.0, 1.0, config.steps + 1, dtype=torch.float64)
        # the generator's time input per level: the level's own, or MDM's of equal log-SNR
        self.net_times = self.times.clone()
        if config.mdm_time:
            self.net_times[1:] = VPCosine().t_of_log_snr(self.path.log_snr(self.times[1:]))

    def build_net(self) -> nn.Module:
        return EMDMNet(self.config)

    def real_pair(
        self, x0: Tensor, k: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """``(x_{k-1}, x_k)`` of the forward process: x_{k-1} ~ q(x_{k-1} | x0), then
        x_k = a x_{k-1} + sqrt(sigma_k^2 - a^2 sigma_{k-1}^2) eps with a = alpha_k / alpha_{k-1}."""
        t, s = self.times[k].to(x0.device), self.times[k - 1].to(x0.device)
        noise = torch.randn((2, *x0.shape), generator=generator, device=x0.device, dtype=x0.dtype)
        x_prev = self.path.marginal(x0, s, noise[0])
        a_t, s_t = self.path.alpha(t), self.path.sigma(t)
        a_ts = a_t / self.path.alpha(s)
        std = (s_t**2 - a_ts**2 * self.path.sigma(s) ** 2).clamp_min(0).sqrt()
        shape = (-1,) + (1,) * (x0.ndim - 1)
        x_t = a_ts.view(shape).to(x0) * x_prev + std.view(shape).to(x0) * noise[1]
        return x_prev, x_t

    def posterior_step(self, x_t: Tensor, x0: Tensor, k: Tensor, noise: Tensor) -> Tensor:
        """A sample of the path's posterior q(x_{k-1} | x_k, x0) (its mean + std * noise)."""
        t, s = self.times[k].to(x_t.device), self.times[k - 1].to(x_t.device)
        mean, std = self.path.posterior(x_t, x0, t, s)
        return mean + std.to(x_t) * noise

    def loss_fn(
        self, net: nn.Module, batch: dict[str, Tensor], generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """The discriminator's and the generator's losses summed (each reaches only its own
        network's weights; see the module docstring), with both logged."""
        c = self.config
        if net.discriminator is None:
            raise InputError("model: a generator-only EMDM export cannot be trained")
        x0, action = batch["x"], batch["action"]
        b, device = x0.shape[0], x0.device
        drop = torch.rand(b, generator=generator, device=device) < c.cond_drop
        action = torch.where(drop, torch.full_like(action, c.n_actions), action)
        k = torch.randint(1, c.steps + 1, (b,), generator=generator, device=device)
        t = self.times.to(device)[k]
        x_prev, x_t = self.real_pair(x0, k, generator)
        z = torch.randn((b, c.latent_dim), generator=generator, device=device, dtype=x0.dtype)
        x0_hat = net.generator(x_t, self.net_times.to(device)[k], action, z)
        noise = torch.randn(x0.shape, generator=generator, device=device, dtype=x0.dtype)
        fake = self.posterior_step(x_t, x0_hat, k, noise)

        # lazy R1 (StyleGAN2's lazy regularisation), drawn at random so that no step counter
        # is needed: the expected penalty is the same as applying it every step
        lazy = torch.rand((), generator=generator, device=device) * c.r1_every < 1
        real = x_prev.detach().requires_grad_(bool(lazy))
        d_fake = discriminate(net.discriminator, fake.detach(), x_t, t, action)
        if lazy:
            with sdpa_kernel(SDPBackend.MATH):  # R1 differentiates twice: fused kernels cannot
                d_real = discriminate(net.discriminator, real, x_t, t, action)
            (grad,) = torch.autograd.grad(d_real.sum(), real, create_graph=True)
            r1 = grad.square().flatten(1).sum(1).mean() * c.r1_every
        else:
            d_real = discriminate(net.discriminator, real, x_t, t, action)
            r1 = torch.zeros((), device=device)
        d_loss = F.softplus(-d_real).mean() + F.softplus(d_fake).mean() + c.r1_gamma / 2 * r1

        g_logit = discriminate(net.discriminator, fake, x_t, t, action, frozen=True)
        losses = {"adversarial": F.softplus(-g_logit).mean(), "discriminator": d_loss, "r1": r1}
        losses["simple"] = (x0_hat - x0).square().mean()
        losses |= self.geometric_losses(net.generator, x0_hat, x0)
        g_loss = c.adversarial_weight * losses["adversarial"] + self.weighted_loss(
            losses, c.reconstruction_weight
        )
        losses["generator"] = g_loss
        losses["loss"] = d_loss + g_loss
        return losses

    def save(self, folder: str | Path, module: nn.Module | None = None, ema: bool = True) -> Path:
        """The generator-only export (``discriminator=False`` in its config): ``module`` a
        trained DiffusionModule (its EMA weights by default), else this method's network."""
        source = self.net if module is None else (module.eval_net if ema else module.net)
        light = MotionDDGAN(replace(self.config, discriminator=False))
        light.net.generator.load_state_dict(source.generator.state_dict())
        return Method.save(light, folder)

    def _x0(self, x: Tensor, k: int, labels: Tensor, z: Tensor, guidance: float) -> Tensor:
        t = self.net_times[k].to(x.device).expand(len(x))
        if guidance == 1.0:
            return self.net.generator(x, t, labels, z)
        null = torch.full_like(labels, self.config.n_actions)
        both = self.net.generator(
            torch.cat([x, x]), torch.cat([t, t]), torch.cat([labels, null]), torch.cat([z, z])
        )
        conditional, unconditional = both.chunk(2)
        return unconditional + guidance * (conditional - unconditional)

    def sampling_steps(self, steps: int | None) -> int:
        """The training's ``config.steps``; another number is an InputError."""
        if steps is not None and steps != self.config.steps:
            raise InputError(
                f"steps: this EMDM model samples in its training's {self.config.steps} steps, "
                f"not {steps}"
            )
        return self.config.steps

    @torch.no_grad()
    def sample(
        self,
        actions: Sequence[str | int] | Tensor,
        *,
        steps: int | None = None,
        solver: str | None = None,
        guidance: float | None = None,
        frames: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Denormalised features ``[B, frames, D]``, one clip per action, in ``config.steps``
        generator steps (``steps`` must be that number or None; ``solver`` is not used: each
        step samples the posterior); ``guidance`` is the CFG scale on the generator's x0
        (None: ``default_guidance``)."""
        guidance = self.default_guidance if guidance is None else guidance
        self.sampling_steps(steps)
        labels = self.action_labels(actions)
        self.net.eval()
        c = self.config
        shape = (len(labels), frames or c.frames, self.layout.dim)
        x = torch.randn(shape, generator=generator).to(self.device)
        for k in range(c.steps, 0, -1):
            z = torch.randn((len(labels), c.latent_dim), generator=generator).to(self.device)
            x0 = self._x0(x, k, labels, z, guidance)
            if k > 1:
                noise = torch.randn(shape, generator=generator).to(self.device)
                x = self.posterior_step(x, x0, torch.tensor(k), noise)
        return self.denormalize(x0)


SHIPPED = "emdm-procedural"  # the checkpoint under polydiff/motion/checkpoints/


def init_generator(method: MotionDDGAN, mdm: MotionDiffusion) -> None:
    """Start ``method``'s generator from a trained MDM denoiser of the same size (weights and
    normaliser), with the latent layer at zero; needs ``mdm_time`` (MDM's time convention)."""
    if not method.config.mdm_time:
        raise InputError("emdm.mdm_time: must be true to start the generator from an MDM")
    if type(mdm) is not MotionDiffusion:
        raise InputError(f"emdm.init: a {type(mdm).__name__}, not an MDM denoiser")
    state = mdm.net.state_dict()
    own = method.net.generator.state_dict()
    wrong = [k for k in own if k in state and own[k].shape != state[k].shape]
    if wrong or set(state) - set(own):
        raise InputError(f"emdm.init: the MDM's network differs in size ({wrong[:3]})")
    method.net.generator.load_state_dict(state, strict=False)
    nn.init.zeros_(method.net.generator.latent.weight)
    nn.init.zeros_(method.net.generator.latent.bias)


def load_emdm(folder: str | Path | None = None) -> MotionDDGAN:
    """A saved EMDM model; None: the shipped checkpoint. Anything else is an InputError."""
    return load_kind(folder, SHIPPED, MotionDDGAN, "an EMDM model")


__all__ = ["EMDMConfig", "EMDMNet", "MotionDDGAN", "discriminate", "init_generator", "load_emdm"]
