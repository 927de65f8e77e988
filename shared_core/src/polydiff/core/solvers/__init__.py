"""Solvers: pure steps over explicit states, registered by name (``get_solver("dpmpp_2m")``)."""

from polydiff.core.solvers.base import (
    Noise,
    Solver,
    SolverBase,
    State,
    check_solver,
    expand_like,
    get_solver,
    list_solvers,
    per_step_coefficients,
    register_solver,
    solvers_for,
)
from polydiff.core.solvers.ode import (
    DDIM,
    DEIS,
    DPMSolverPPMultistep,
    DPMSolverPPSinglestep,
    Euler,
    Heun,
    MultistepState,
    UniPC,
)
from polydiff.core.solvers.sde import EulerMaruyama, PCLangevin, SDEDPMSolverPPMultistep

__all__ = [
    "DDIM",
    "DEIS",
    "DPMSolverPPMultistep",
    "DPMSolverPPSinglestep",
    "Euler",
    "EulerMaruyama",
    "Heun",
    "MultistepState",
    "Noise",
    "PCLangevin",
    "SDEDPMSolverPPMultistep",
    "Solver",
    "SolverBase",
    "State",
    "UniPC",
    "check_solver",
    "expand_like",
    "get_solver",
    "list_solvers",
    "per_step_coefficients",
    "register_solver",
    "solvers_for",
]
