"""Diffuser-style planner (Janner et al. 2022, "Planning with Diffusion for Flexible Behavior
Synthesis"): a diffusion model over whole state-action trajectories, conditioned by inpainting:
the first state is the current observation, and optionally chosen state columns of the last
step are the goal read from the current observation (maze2d's goal conditioning). The planned
actions are executed with a receding horizon."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import Tensor

from polydiff.core.errors import InputError
from polydiff.core.hooks import inpaint
from polydiff.core.losses import diffusion_loss
from polydiff.core.method import register_method
from polydiff.core.nn import TemporalUNet, TemporalUNetConfig
from polydiff.core.sample import sample
from polydiff.motion.policy.data import SequenceWindows
from polydiff.motion.policy.diffusion_policy import DiffusionPolicy, DiffusionPolicyConfig

__all__ = ["DiffuserPlanner", "PlannerConfig"]


@dataclasses.dataclass
class PlannerConfig(DiffusionPolicyConfig):
    horizon: int = 64
    n_obs_steps: int = 1
    n_action_steps: int = 8
    steps: int = 20
    goal_columns: tuple[int, ...] = ()
    """Observation columns fixed at the plan's last step (PointMaze: achieved_goal, (0, 1)) ..."""
    goal_source: tuple[int, ...] = ()
    """... to these columns of the current observation (PointMaze: desired_goal, (2, 3))."""


@register_method
class DiffuserPlanner(DiffusionPolicy):
    """Epsilon-prediction on (observation, action) trajectories; the first observation (and the
    goal columns of the last) are inpainted with the core's replacement hook at every step."""

    name, config_class = "diffuser", PlannerConfig

    def __init__(self, config: PlannerConfig, net=None):
        if config.n_obs_steps != 1:
            raise InputError(
                f"n_obs_steps: the planner conditions on 1 observation, got {config.n_obs_steps}"
            )
        if len(config.goal_columns) != len(config.goal_source):
            raise InputError("goal_columns and goal_source must have the same length")
        for option in ("goal_columns", "goal_source"):
            bad = [i for i in getattr(config, option) if not 0 <= i < config.obs_dim]
            if bad:
                raise InputError(f"{option}: columns {bad} outside 0..{config.obs_dim - 1}")
        super().__init__(config, net)

    def build_net(self) -> TemporalUNet:
        c = self.config
        self.check_horizon()
        return TemporalUNet(
            TemporalUNetConfig(
                in_channels=c.obs_dim + c.act_dim,
                channels=c.channels,
                channel_mult=tuple(c.channel_mult),
                kernel_size=c.kernel_size,
            )
        )

    def batch(self, windows: SequenceWindows, indices) -> dict[str, Tensor]:
        raw = windows.batch(indices)
        traj = np.concatenate(
            [
                self.obs_norm.normalize(raw["observations"]),
                self.action_norm.normalize(raw["actions"]),
            ],
            -1,
        )
        return {"traj": torch.as_tensor(traj, dtype=torch.float32, device=self.device)}

    def loss_fn(self, net, batch) -> Tensor:
        return diffusion_loss(lambda x, t: net(x, t), batch["traj"], self.path).mean()

    def _model(self, x: Tensor, t: Tensor) -> Tensor:
        self.network_calls += 1
        return self.net(x, t)

    def conditions(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """(mask, known) of the trajectory (B, H, obs + act) for normalized observations."""
        c = self.config
        b, d = obs.shape[0], c.obs_dim + c.act_dim
        mask = torch.zeros(b, c.horizon, d, dtype=torch.bool, device=obs.device)
        known = torch.zeros(b, c.horizon, d, device=obs.device)
        mask[:, 0, : c.obs_dim] = True
        known[:, 0, : c.obs_dim] = obs[:, -1]
        if c.goal_columns:
            cols, src = list(c.goal_columns), list(c.goal_source)
            raw = self.obs_norm.unnormalize(obs[:, -1])
            scale = torch.as_tensor(self.obs_norm.scale[cols], dtype=obs.dtype)
            offset = torch.as_tensor(self.obs_norm.offset[cols], dtype=obs.dtype)
            mask[:, -1, cols] = True
            known[:, -1, cols] = raw[:, src] * scale + offset
        return mask, known

    @torch.no_grad()
    def plan(self, obs: Tensor, *, steps=None, solver=None, generator=None) -> Tensor:
        """Normalized trajectories (B, H, obs + act) for normalized observations (B, 1, obs)."""
        c = self.config
        mask, known = self.conditions(obs)
        x_init = torch.randn(known.shape, generator=generator, device=obs.device)
        x = sample(
            self._model,
            torch.where(mask, known, x_init),
            path=self.path,
            solver=solver or c.solver,
            steps=steps or c.steps,
            xt_hook=inpaint(mask, known, self.path),
            x0_hook=self.x0_hook(),
            generator=generator,
        )
        return torch.where(mask, known, x)  # the conditions exactly

    def predict(self, obs: Tensor, **options) -> Tensor:
        return self.plan(obs, **options)[..., self.config.obs_dim :]

    sample = plan
