"""Solver steps compile with fullgraph=True: no graph breaks, no host syncs in a step."""

from __future__ import annotations

import pytest
import torch

from polydiff.core import paths
from polydiff.core.param import Denoiser
from polydiff.core.solvers import get_solver

PATH = paths.VPLinear()
T0, T1, T2 = (torch.tensor(v, dtype=torch.float64) for v in (0.8, 0.6, 0.4))
Z = torch.randn(4, 2)


def _net(x, t):  # a cheap smooth stand-in for a network
    return torch.tanh(x) * t[:, None] + 0.1 * x


MODEL = Denoiser(_net, PATH, "eps")


def _noise(like):
    return Z


def _check(name: str, backend: str) -> None:
    torch._dynamo.reset()  # fresh cache per solver (the traced closure is the same code object)
    solver = get_solver(name)
    x = torch.randn(4, 2)
    state = solver.step(solver.init(x, T0), T0, T1, MODEL, i=0, n=10, noise=_noise)

    def one_step(state, t_cur, t_next):
        return solver.step(state, t_cur, t_next, MODEL, i=1, n=10, noise=_noise)

    out = torch.compile(one_step, fullgraph=True, backend=backend)(state, T1, T2)
    eager = one_step(state, T1, T2)
    assert torch.allclose(out.x, eager.x, rtol=1e-5, atol=1e-6), name


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit internals during tracing
def test_every_continuous_solver_step_traces_as_one_graph():
    for name in (
        "ddpm",
        "dpmpp_3m",
        "dpmpp_3s",
        "unipc",
        "deis",
        "flow_heun",
        "euler",
        "heun",
        "sde_dpmpp_2m",
        "pc_langevin",
    ):
        _check(name, backend="eager")  # dynamo capture with fullgraph: fails on any graph break


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_dpmpp_2m_step_compiles_with_inductor():
    _check("dpmpp_2m", backend="inductor")
