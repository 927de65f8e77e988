"""Behaviour cloning baseline: an MLP regresses the H-step action chunk on the last To
observations (mean squared error), executed with the same receding horizon as the diffusion
policy so the two differ only in the action model."""

from __future__ import annotations

import dataclasses
import itertools

import torch
from torch import Tensor, nn

from polydiff.core.method import register_method
from polydiff.motion.policy.common import PolicyConfig, PolicyMethod

__all__ = ["BCConfig", "BCPolicy"]


@dataclasses.dataclass
class BCConfig(PolicyConfig):
    hidden: int = 256
    depth: int = 3


@register_method
class BCPolicy(PolicyMethod):
    name, config_class = "bc_mlp", BCConfig

    def build_net(self) -> nn.Sequential:
        c = self.config
        width = [c.n_obs_steps * c.obs_dim] + [c.hidden] * c.depth
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(width):
            layers += [nn.Linear(a, b), nn.Mish()]
        return nn.Sequential(*layers, nn.Linear(width[-1], c.horizon * c.act_dim))

    def loss_fn(self, net, batch) -> Tensor:
        pred = net(batch["obs"].flatten(1)).view_as(batch["action"])
        return (pred - batch["action"]).square().mean()

    @torch.no_grad()
    def sample(self, obs: Tensor) -> Tensor:
        """Normalized action chunks (B, H, act) for normalized observations (B, To, obs)."""
        self.network_calls += 1
        return self.net(obs.flatten(1)).view(obs.shape[0], self.config.horizon, -1)

    predict = sample
