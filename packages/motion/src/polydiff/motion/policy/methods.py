"""Importing this module registers the policy methods (``load_method`` finds them by name)."""

from polydiff.motion.policy.bc import BCConfig, BCPolicy
from polydiff.motion.policy.diffusion_policy import DiffusionPolicy, DiffusionPolicyConfig
from polydiff.motion.policy.flow_policy import FlowPolicy, FlowPolicyConfig
from polydiff.motion.policy.planner import DiffuserPlanner, PlannerConfig
from polydiff.motion.policy.streaming_policy import StreamingPolicy, StreamingPolicyConfig

__all__ = [
    "BCConfig",
    "BCPolicy",
    "DiffuserPlanner",
    "DiffusionPolicy",
    "DiffusionPolicyConfig",
    "FlowPolicy",
    "FlowPolicyConfig",
    "PlannerConfig",
    "StreamingPolicy",
    "StreamingPolicyConfig",
]
