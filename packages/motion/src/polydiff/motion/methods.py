"""The motion methods, registered with the core (`polydiff.core.method`) as domain "motion":
importing this module registers MDM (`mdm`), EMDM (`emdm`) and the frame-by-frame streamer
(`autoregressive`), so `load_method` rebuilds a saved one."""

from polydiff.motion.autoregressive import MotionStreamer, StreamConfig
from polydiff.motion.emdm import EMDMConfig, MotionDDGAN
from polydiff.motion.mdm import MDMConfig, MotionDiffusion

__all__ = [
    "EMDMConfig",
    "MDMConfig",
    "MotionDDGAN",
    "MotionDiffusion",
    "MotionStreamer",
    "StreamConfig",
]
