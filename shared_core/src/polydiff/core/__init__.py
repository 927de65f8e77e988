"""polydiff.core: generative paths, parameterizations, grids, solvers and the sampling driver."""

from polydiff.core import grids, hooks, losses, param, paths, solvers
from polydiff.core.guidance import CFG, SMC, GradientGuidance, cfg
from polydiff.core.method import Config, Method, load_method, register_method
from polydiff.core.param import Denoiser, EDMPrecond, convert, from_x0, to_x0
from polydiff.core.paths import EDM, OUVE, VE, AffinePath, Flow, MeanReverting, VPCosine, VPLinear
from polydiff.core.sample import NoiseSource, sample
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
    "MeanReverting",
    "Method",
    "NoiseSource",
    "State",
    "VPCosine",
    "VPLinear",
    "cfg",
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
    "to_x0",
]
