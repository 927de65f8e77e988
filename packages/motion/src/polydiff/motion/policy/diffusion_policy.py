"""Diffusion policy (Chi et al. 2023, "Diffusion Policy: Visuomotor Policy Learning via Action
Diffusion"): a chunk of H actions denoised by a FiLM-conditioned temporal U-Net given the last
To observations, executed with a receding horizon; sampled with any core solver (DDPM, DDIM,
DPM-Solver++)."""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from polydiff.core.errors import InputError
from polydiff.core.hooks import clamp
from polydiff.core.losses import diffusion_loss
from polydiff.core.method import register_method
from polydiff.core.nn import TemporalUNet, TemporalUNetConfig
from polydiff.core.paths import AffinePath, VPCosine
from polydiff.core.sample import sample
from polydiff.motion.policy.common import PolicyConfig, PolicyMethod

__all__ = ["DiffusionPolicy", "DiffusionPolicyConfig"]


@dataclasses.dataclass
class DiffusionPolicyConfig(PolicyConfig):
    channels: int = 64
    channel_mult: tuple[int, ...] = (1, 2, 4)
    kernel_size: int = 5
    solver: str = "ddim"
    """Default sampler: "ddpm" (ancestral), "ddim", "dpmpp_2m" ... (core solvers)."""
    steps: int = 10
    clip_sample: bool = True
    """Clamp every x0 prediction to [-1, 1], the range of limits-normalized actions (as
    diffusion_policy's scheduler does); off for Gaussian-normalized actions."""


@register_method
class DiffusionPolicy(PolicyMethod):
    """Epsilon-prediction on the cosine VP path; the observations (To x obs, normalized) are
    the U-Net's FiLM condition."""

    name, config_class = "diffusion_policy", DiffusionPolicyConfig
    prediction = "eps"

    def __init__(self, config: DiffusionPolicyConfig, net=None):
        super().__init__(config, net)
        self.path = self.make_path()

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

    def build_net(self) -> TemporalUNet:
        c = self.config
        self.check_horizon()
        return TemporalUNet(
            TemporalUNetConfig(
                in_channels=c.act_dim,
                channels=c.channels,
                channel_mult=tuple(c.channel_mult),
                cond_dim=c.n_obs_steps * c.obs_dim,
                kernel_size=c.kernel_size,
            )
        )

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
