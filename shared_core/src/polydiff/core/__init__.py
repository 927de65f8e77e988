"""polydiff.core: generative paths, parameterizations, grids, solvers and the sampling driver."""

from polydiff.core import conditioning, grids, hooks, losses, param, paths, solvers, streaming
from polydiff.core.conditioning import CFG
from polydiff.core.errors import InputError
from polydiff.core.guidance import SMC, GradientGuidance
from polydiff.core.method import Config, Method, load_method, register_method
from polydiff.core.param import Denoiser, EDMPrecond, convert, from_x0, to_x0
from polydiff.core.paths import EDM, OUVE, VE, AffinePath, Flow, MeanReverting, VPCosine, VPLinear
from polydiff.core.sample import NoiseSource, StepInfo, sample
from polydiff.core.solvers import State, get_solver, list_solvers, register_solver

__all__ = [
    "CFG",
    "EDM",
    "OUVE",
    "SMC",
    "VE",
    "AffinePath",
    "Config",
    "Denoiser",
    "EDMPrecond",
    "Flow",
    "GradientGuidance",
    "InputError",
    "MeanReverting",
    "Method",
    "NoiseSource",
    "State",
    "StepInfo",
    "VPCosine",
    "VPLinear",
    "conditioning",
    "convert",
    "from_x0",
    "get_solver",
    "grids",
    "hooks",
    "list_solvers",
    "load_method",
    "losses",
    "param",
    "paths",
    "register_method",
    "register_solver",
    "sample",
    "solvers",
    "streaming",
    "to_x0",
]
