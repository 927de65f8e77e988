"""Networks of polydiff.pde."""

from polydiff.pde.nets.fno import FNO1d, SpectralConv1d
from polydiff.pde.nets.unet import CoefficientUNet, CoefficientUNetConfig

__all__ = ["CoefficientUNet", "CoefficientUNetConfig", "FNO1d", "SpectralConv1d"]
