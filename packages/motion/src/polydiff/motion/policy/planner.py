"""Diffuser-style planner (Janner et al. 2022, "Planning with Diffusion for Flexible Behavior
Synthesis"): a diffusion model over whole state-action trajectories, conditioned by inpainting:
the first state is the current observation, and optionally chosen state columns of the last
step are the goal read from the current observation (maze2d's goal conditioning). The planned
actions are executed with a receding horizon.

With ``value_hidden > 0`` a value function of noisy trajectories V(x_t, t) is trained beside the
denoiser on the discounted return-to-go of each window's first step (Diffuser Sec. 3.2); it
guides sampling (``guide_scale``: x_t += scale grad V before each step, the core's
``GradientGuidance(rule="value")``) and ranks ``candidates`` plans per observation (the core's
``best_of``), as Diffuser's guided planner does."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import Tensor, nn

from polydiff.core.errors import InputError
from polydiff.core.guidance import GradientGuidance, best_of
from polydiff.core.hooks import inpaint
from polydiff.core.losses import diffusion_loss
from polydiff.core.method import register_method
from polydiff.core.nn import TemporalUNet, TemporalUNetConfig, TimeMLP, sinusoidal_embedding
from polydiff.core.sample import sample
from polydiff.motion.policy.data import OfflineData, SequenceWindows
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
    value_hidden: int = 0
    """Width of the value MLP V(x_t, t) trained beside the denoiser (0: no value function)."""
    discount: float = 0.99
    """Discount of the return-to-go the value function learns."""
    guide_scale: float = 0.0
    """Value guidance: x_t += guide_scale * grad V(x_t, t) before each step (needs a value)."""
    guide_t_min: float = 0.1
    """No guidance below this time (Diffuser's t_stopgrad: the last steps stay unguided)."""
    candidates: int = 1
    """Plans sampled per observation; the one of highest value is executed (needs a value)."""


class TrajectoryValue(nn.Module):
    """V(x_t, t): an MLP on the flattened noisy trajectory and the time's embedding."""

    def __init__(self, horizon: int, channels: int, hidden: int):
        super().__init__()
        self.time_mlp = TimeMLP(32, hidden)
        self.mlp = nn.Sequential(
            nn.Linear(horizon * channels + hidden, hidden), nn.Mish(),
            nn.Linear(hidden, hidden), nn.Mish(), nn.Linear(hidden, 1),
        )  # fmt: skip

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device).expand(x.shape[0])
        emb = self.time_mlp(sinusoidal_embedding(t, 32, scale=1000.0))
        return self.mlp(torch.cat([x.flatten(1), emb], -1)).squeeze(-1)


class PlannerNet(nn.Module):
    """The trajectory denoiser ``net(x, t)`` with the value function beside it (``.value``)."""

    def __init__(self, denoiser: TemporalUNet, value: TrajectoryValue):
        super().__init__()
        self.denoiser, self.value = denoiser, value

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return self.denoiser(x, t)


def return_to_go(data: OfflineData, discount: float) -> np.ndarray:
    """Per step, the discounted sum of the rewards from it to the end of its episode."""
    out = np.zeros(len(data), np.float32)
    for start, stop in data.episode_bounds():
        acc = 0.0
        for i in range(stop - 1, start - 1, -1):
            acc = float(data.rewards[i]) + discount * acc
            out[i] = acc
    return out


@register_method
class DiffuserPlanner(DiffusionPolicy):
    """Denoising (``config.prediction``) of (observation, action) trajectories; the first
    observation (and the goal columns of the last) are inpainted with the core's replacement
    hook at every step."""

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
        if config.value_hidden < 0 or config.candidates < 1:
            raise InputError("value_hidden must be >= 0 and candidates >= 1")
        if (config.guide_scale or config.candidates > 1) and not config.value_hidden:
            raise InputError("guide_scale / candidates: need a value function (value_hidden > 0)")
        super().__init__(config, net)

    def build_net(self) -> nn.Module:
        c = self.config
        self.check_horizon()
        denoiser = TemporalUNet(
            TemporalUNetConfig(
                in_channels=c.obs_dim + c.act_dim,
                channels=c.channels,
                channel_mult=tuple(c.channel_mult),
                kernel_size=c.kernel_size,
            )
        )
        if not c.value_hidden:
            return denoiser
        return PlannerNet(denoiser, TrajectoryValue(c.horizon, c.obs_dim + c.act_dim,
                                                    c.value_hidden))  # fmt: skip

    def windows(self, data: OfflineData) -> SequenceWindows:
        c, keys = self.config, ("observations", "actions")
        if c.value_hidden:  # each window's value target: the return-to-go of its first step
            rtg = return_to_go(data, c.discount)
            data = dataclasses.replace(data, infos={**data.infos, "return_to_go": rtg})
            keys += ("infos/return_to_go",)
        return SequenceWindows(data, c.horizon, c.n_obs_steps, c.n_action_steps, keys)

    def batch(self, windows: SequenceWindows, indices) -> dict[str, Tensor]:
        raw = windows.batch(indices)
        traj = np.concatenate(
            [
                self.obs_norm.normalize(raw["observations"]),
                self.action_norm.normalize(raw["actions"]),
            ],
            -1,
        )
        out = {"traj": torch.as_tensor(traj, dtype=torch.float32, device=self.device)}
        if "infos/return_to_go" in raw:
            value = raw["infos/return_to_go"][:, 0]
            out["value"] = torch.as_tensor(value, dtype=torch.float32, device=self.device)
        return out

    def loss_fn(self, net, batch) -> Tensor | dict[str, Tensor]:
        loss = diffusion_loss(
            lambda x, t: net(x, t), batch["traj"], self.path, prediction=self.prediction
        ).mean()
        if "value" not in batch:
            return loss
        traj = batch["traj"]  # the value of noisy trajectories, at its own random times
        t = torch.rand(traj.shape[0], device=traj.device) * (1 - self.path.t_end)
        t = t + self.path.t_end
        x_t = self.path.marginal(traj, t, torch.randn_like(traj))
        value_loss = (net.value(x_t, t) - batch["value"]).square().mean()
        return {"loss": loss + value_loss, "value_loss": value_loss}

    def value(self, x: Tensor, t) -> Tensor:
        """V(x, t) per trajectory (normalized trajectories (B, H, obs + act))."""
        return self.net.value(x, t)

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
        """Normalized trajectories (B, H, obs + act) for normalized observations (B, 1, obs):
        ``candidates`` plans each (value-guided with ``guide_scale``), the best by value."""
        c = self.config
        k = c.candidates
        mask, known = self.conditions(obs.repeat_interleave(k, 0))
        x_init = torch.randn(known.shape, generator=generator, device=obs.device)
        guidance = []
        if c.guide_scale:
            objective = GradientGuidance(
                self.value, c.guide_scale, rule="value", interval=(c.guide_t_min, 1.0)
            )
            guidance.append(objective)
        x = sample(
            self._model,
            torch.where(mask, known, x_init),
            path=self.path,
            solver=solver or c.solver,
            steps=steps or c.steps,
            prediction=self.prediction,
            guidance=guidance,
            xt_hook=inpaint(mask, known, self.path),
            x0_hook=self.x0_hook(),
            generator=generator,
        )
        x = torch.where(mask, known, x)  # the conditions exactly
        if k == 1:
            return x
        return best_of(x, self.value(x, self.path.t_end), k)

    def predict(self, obs: Tensor, **options) -> Tensor:
        return self.plan(obs, **options)[..., self.config.obs_dim :]

    sample = plan
