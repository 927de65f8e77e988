"""Flow-matching policy: the diffusion policy's network and conditioning trained with conditional
flow matching on the rectified-flow path (Lipman et al. 2023, "Flow Matching for Generative
Modeling"; Liu et al. 2023, "Flow Straight and Fast") and sampled with 1-2 Euler steps, as
GoalFlow (Xing et al. 2025, "GoalFlow: Goal-Driven Flow Matching for Multimodal Trajectories
Generation in End-to-End Autonomous Driving") does with a single step."""

from __future__ import annotations

import dataclasses

from polydiff.core.method import register_method
from polydiff.core.paths import AffinePath, Flow
from polydiff.motion.policy.diffusion_policy import DiffusionPolicy, DiffusionPolicyConfig

__all__ = ["FlowPolicy", "FlowPolicyConfig"]


@dataclasses.dataclass
class FlowPolicyConfig(DiffusionPolicyConfig):
    prediction: str = "velocity"
    solver: str = "flow_euler"
    steps: int = 2


@register_method
class FlowPolicy(DiffusionPolicy):
    """Velocity prediction on x_t = (1 - t) x0 + t eps; Euler in t from pure noise."""

    name, config_class = "flow_policy", FlowPolicyConfig
    predictions = ("velocity",)

    def make_path(self) -> AffinePath:
        return Flow()
