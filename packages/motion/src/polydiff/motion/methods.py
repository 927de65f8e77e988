"""The motion methods, registered with the core (`polydiff.core.method`) as domain "motion":
importing this module registers MDM (`mdm`), so `load_method` rebuilds a saved one."""

from polydiff.motion.mdm import MDMConfig, MotionDiffusion

__all__ = ["MDMConfig", "MotionDiffusion"]
