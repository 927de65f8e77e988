"""Importing this module registers the policy methods (``load_method`` finds them by name)."""

from polydiff.motion.policy.bc import BCConfig, BCPolicy
from polydiff.motion.policy.diffusion_policy import DiffusionPolicy, DiffusionPolicyConfig

__all__ = ["BCConfig", "BCPolicy", "DiffusionPolicy", "DiffusionPolicyConfig"]
