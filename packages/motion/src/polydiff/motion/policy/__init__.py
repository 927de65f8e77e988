"""polydiff.motion.policy: offline data, scripted experts and policies evaluated by rollouts.

See docs/policy.md.
"""
