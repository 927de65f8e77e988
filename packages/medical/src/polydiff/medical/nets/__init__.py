"""Networks: the 2D slice U-Net prior."""

from polydiff.medical.nets.unet import PRESETS, SliceUNet, SliceUNetConfig

__all__ = ["PRESETS", "SliceUNet", "SliceUNetConfig"]
