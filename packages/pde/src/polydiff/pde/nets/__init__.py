"""Networks of polydiff.pde."""

from polydiff.pde.nets.unet import CoefficientUNet, CoefficientUNetConfig

__all__ = ["CoefficientUNet", "CoefficientUNetConfig"]
