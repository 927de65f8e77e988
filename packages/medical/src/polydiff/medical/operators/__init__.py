"""Forward operators ``A`` with exact adjoints, applied slice by slice to ``(..., H, W)``."""

from polydiff.medical.operators.base import LinearOperator, inner
from polydiff.medical.operators.ct import (
    CTGeometry,
    FanBeamCT,
    LimitedAngleCT,
    ParallelBeamCT,
    RotateSumCT,
    SparseMatrixOperator,
    uniform_angles,
)
from polydiff.medical.operators.difference import FiniteDifference
from polydiff.medical.operators.factory import OPERATORS, make_operator
from polydiff.medical.operators.masks import (
    acceleration_of,
    gaussian1d_mask,
    gaussian2d_mask,
    make_mask,
    poisson_disc_mask,
    uniform1d_mask,
)
from polydiff.medical.operators.mri import CartesianMRI, fft2c, ifft2c

__all__ = [
    "OPERATORS",
    "CTGeometry",
    "CartesianMRI",
    "FanBeamCT",
    "FiniteDifference",
    "LimitedAngleCT",
    "LinearOperator",
    "ParallelBeamCT",
    "RotateSumCT",
    "SparseMatrixOperator",
    "acceleration_of",
    "fft2c",
    "gaussian1d_mask",
    "gaussian2d_mask",
    "ifft2c",
    "inner",
    "make_mask",
    "make_operator",
    "poisson_disc_mask",
    "uniform1d_mask",
    "uniform_angles",
]
