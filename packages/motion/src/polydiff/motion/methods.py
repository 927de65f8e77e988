"""The motion methods, registered with the core (`polydiff.core.method`) as domain "motion":
importing this module registers MDM (`mdm`) and EMDM (`emdm`), so `load_method` rebuilds a
saved one."""

from polydiff.motion.emdm import EMDMConfig, MotionDDGAN
from polydiff.motion.mdm import MDMConfig, MotionDiffusion

__all__ = ["EMDMConfig", "MDMConfig", "MotionDDGAN", "MotionDiffusion"]
