"""Diffusion policy (Chi et al. 2023, "Diffusion Policy: Visuomotor Policy Learning via Action
Diffusion"): a chunk of H actions denoised by a FiLM-conditioned temporal U-Net given the last
To observations, executed with a receding horizon; sampled with any core solver (DDPM, DDIM,
DPM-Solver++)."""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from polydiff.core.errors import InputError
from polydiff.core.hooks import clamp
from polydiff.core.losses import diffusion_loss
from polydiff.core.method import register_method
from polydiff.core.nn import TemporalUNet, TemporalUNetConfig
from polydiff.core.paths import AffinePath, VPCosine
from polydiff.core.sample import sample
from polydiff.motion.policy.common import PolicyConfig, PolicyMethod

__all__ = ["DiffusionPolicy", "DiffusionPolicyConfig", "EncodedCondition"]


@dataclasses.dataclass
class DiffusionPolicyConfig(PolicyConfig):
    channels: int = 64
    channel_mult: tuple[int, ...] = (1, 2, 4)
    kernel_size: int = 5
    prediction: str = "eps"
    """What the network predicts: "eps" (Chi et al.'s default), "x0" (Diffuser) or "v". The
    squared error of eps weights the action error by alpha^2 / sigma^2, next to nothing at high
    noise, where the sampler commits to a mode; x0 weights every time alike, v (as the flow
    policy's velocity) by 1 / sigma^2 >= 1."""
    solver: str = "ddim"
    """Default sampler: "ddpm" (ancestral), "ddim", "dpmpp_2m" ... (core solvers)."""
    steps: int = 10
    clip_sample: bool = True
    """Clamp every x0 prediction to [-1, 1], the range of limits-normalized actions (as
    diffusion_policy's scheduler does); off for Gaussian-normalized actions."""
    obs_encoder: int = 0
    """Width of a 2-layer MLP that encodes the observations before they reach the U-Net's FiLM
    layers (0: the flat observations are the FiLM condition, as diffusion_policy's low-dim
    U-Net does)."""


class EncodedCondition(nn.Module):
    """``net(x, t, cond)`` with ``cond`` passed through an MLP encoder first (``.encoder``)."""

    def __init__(self, net: nn.Module, cond_dim: int, width: int):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Linear(cond_dim, width), nn.Mish(), nn.Linear(width, width), nn.Mish()
        )
        self.net = net

    def forward(self, x: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        return self.net(x, t, self.encoder(cond))


@register_method
class DiffusionPolicy(PolicyMethod):
    """The cosine VP path, predicting ``config.prediction``; the observations (To x obs,
    normalized) are the U-Net's FiLM condition."""

    name, config_class = "diffusion_policy", DiffusionPolicyConfig
    predictions: tuple[str, ...] = ("eps", "x0", "v")

    def __init__(self, config: DiffusionPolicyConfig, net=None):
        if config.prediction not in self.predictions:
            raise InputError(
                f"prediction: {config.prediction!r} is not one of {', '.join(self.predictions)}"
            )
        super().__init__(config, net)
        self.path = self.make_path()

    @property
    def prediction(self) -> str:
        return self.config.prediction

    def make_path(self) -> AffinePath:
        return VPCosine()

    def check_horizon(self) -> None:
        c = self.config
        multiple = 2 ** (len(c.channel_mult) - 1)
        if c.horizon % multiple:
            raise InputError(
                f"horizon: {c.horizon} must be a multiple of {multiple} for a U-Net with "
                f"{len(c.channel_mult)} levels"
            )

    def build_net(self) -> nn.Module:
        c = self.config
        self.check_horizon()
        obs = c.n_obs_steps * c.obs_dim
        unet = TemporalUNet(
            TemporalUNetConfig(
                in_channels=c.act_dim,
                channels=c.channels,
                channel_mult=tuple(c.channel_mult),
                cond_dim=c.obs_encoder or obs,
                kernel_size=c.kernel_size,
            )
        )
        return EncodedCondition(unet, obs, c.obs_encoder) if c.obs_encoder else unet

    def loss_fn(self, net, batch) -> Tensor:
        cond = batch["obs"].flatten(1)
        return diffusion_loss(
            lambda x, t: net(x, t, cond), batch["action"], self.path, prediction=self.prediction
        ).mean()

    def _model(self, x: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        self.network_calls += 1
        return self.net(x, t, cond)

    @torch.no_grad()
    def sample(
        self,
        obs: Tensor,
        *,
        steps: int | None = None,
        solver: str | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Normalized action chunks (B, H, act) for normalized observations (B, To, obs)."""
        c = self.config
        x_init = torch.randn(
            obs.shape[0], c.horizon, c.act_dim, generator=generator, device=obs.device
        )
        return sample(
            self._model,
            x_init,
            path=self.path,
            solver=solver or c.solver,
            steps=steps or c.steps,
            prediction=self.prediction,
            cond=obs.flatten(1),
            x0_hook=self.x0_hook(),
            generator=generator,
        )

    def x0_hook(self):
        """Clamp x0 predictions to [-1, 1] (core ``hooks.clamp``) when ``clip_sample`` is on
        and actions are limits-normalized."""
        return clamp() if self.config.clip_sample and self.action_norm.kind == "limits" else None

    predict = sample
