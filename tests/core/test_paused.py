"""Per-position and paused times in every continuous solver, on exact scores: a position whose
time does not move over a step is held exactly (no NaN leaks in from it, no history pushed), and
a moving position follows exactly the run it would take alone on its own grid."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from helpers import assert_close

from polydiff.core import grids, paths, sample
from polydiff.core.param import Denoiser
from polydiff.core.solvers import get_solver, list_solvers
from polydiff.core.testing import GaussianMixture, reference_ode

F64 = torch.float64
GMM = GaussianMixture([[-2.0, 0.5], [1.5, 1.0], [0.3, -2.0]], [0.3, 0.5, 0.2], [0.3, 0.4, 0.3])
VP = paths.VPLinear()
T0, T1 = 1.0, 1e-3
# every solver of the affine paths in the registry (the others belong to other processes)
CONTINUOUS = [
    n for n in list_solvers() if type(get_solver(n)).__module__.startswith("polydiff.core.solvers.")
]


class StepNoise:
    """Seeded standard normals, recorded per step (the driver's callback closes a step), so a
    position's own run can be fed exactly the draws it saw in the joint run."""

    def __init__(self, seed: int) -> None:
        self.generator = torch.Generator().manual_seed(seed)
        self.steps: list[list[torch.Tensor]] = [[]]

    def __call__(self, like: torch.Tensor) -> torch.Tensor:
        z = torch.randn(like.shape, generator=self.generator, dtype=like.dtype)
        self.steps[-1].append(z)
        return z

    def close_step(self, *_) -> None:
        self.steps.append([])

    def of_position(self, j: int, steps: list[int]) -> list[torch.Tensor]:
        return [z[:, j] for i in steps for z in self.steps[i]]


def _column(own: torch.Tensor, moves: list[bool]) -> torch.Tensor:
    """A position's column of a joint grid: it takes the next time of its own grid ``own`` at
    the steps where it moves and keeps its time elsewhere."""
    times, k = [own[0]], 0
    for m in moves:
        k += int(m)
        times.append(own[k])
    assert k == len(own) - 1
    return torch.stack(times)


def _joint_and_alone(name, path, x_T, columns, moves, t_ends=None, prediction="eps"):
    """Run the joint per-position sample, then each moving position alone on its own (shared
    time) grid with the same noise; returns (joint output, [alone output per position])."""
    ts = torch.stack(columns, 1)[:, None].expand(-1, x_T.shape[0], -1)  # [n+1, B, L]
    noise = StepNoise(0)
    model = GMM.model(path, prediction)
    joint = sample(
        model,
        x_T,
        path=path,
        solver=name,
        grid=ts,
        prediction=prediction,
        noise=noise,
        callback=noise.close_step,
    )
    alone = []
    for j, col in enumerate(columns):
        steps = [i for i, m in enumerate(moves[j]) if m]
        if not steps:
            alone.append(None)
            continue
        own = torch.cat([col[:1], col[1:][torch.tensor(moves[j])]])
        alone.append(
            sample(
                model,
                x_T[:, j],
                path=path,
                solver=name,
                grid=own,
                prediction=prediction,
                noise=noise.of_position(j, steps),
            )
        )
    return joint, alone


def test_every_continuous_solver_allows_paused_times():
    assert len(CONTINUOUS) >= 17
    assert all(get_solver(n).allows_paused_times for n in CONTINUOUS)


@pytest.mark.parametrize("name", CONTINUOUS)
def test_paused_position_follows_its_own_run(name):
    """Position 0 waits at t_start for the first third, moves, pauses again in the middle (with
    its multistep history from before the pause) and moves to the end; position 1 moves every
    step. Each equals its run alone (same noise)."""
    n = 30
    moves0 = [False] * 10 + [True] * 10 + [False] * 5 + [True] * 5
    columns = [
        _column(grids.logsnr(15, VP, T0, T1), moves0),
        grids.logsnr(n, VP, T0, T1),
    ]
    x_T = torch.randn(3, 2, 2, dtype=F64, generator=torch.Generator().manual_seed(1))
    joint, alone = _joint_and_alone(name, VP, x_T, columns, [moves0, [True] * n])
    assert torch.isfinite(joint).all()
    for j in range(2):
        assert_close(joint[:, j], alone[j], rtol=1e-10, atol=1e-12, msg=f"{name} position {j}")


@pytest.mark.parametrize("name", ["dpmpp_3m", "unipc", "deis"])
def test_paused_position_converges_to_the_exact_ode(name):
    """Waiting for the first half of the grid, a position still converges to the exact ODE
    solution at its solver's order (the multistep warm-up restarts when it starts moving)."""
    x_T = torch.randn(4, 2, 2, dtype=F64, generator=torch.Generator().manual_seed(2))
    ref = reference_ode(GMM, VP, x_T[:, 0], T0, T1)
    errs = []
    for m in (20, 40):
        moves0 = [False] * m + [True] * m
        columns = [_column(grids.logsnr(m, VP, T0, T1), moves0), grids.logsnr(2 * m, VP, T0, T1)]
        ts = torch.stack(columns, 1)[:, None].expand(-1, 4, -1)
        x = sample(GMM.model(VP), x_T, path=VP, solver=name, grid=ts)
        errs.append((x[:, 0] - ref).norm(dim=-1).mean().item())
    assert errs[1] < errs[0] / 4 and errs[1] < 0.02, errs


@pytest.mark.parametrize("name", CONTINUOUS)
def test_clean_context_at_sigma_zero_is_held_exactly(name):
    """A clean context position at t = 0 on a flow path (sigma = 0: the exact eps prediction there
    is NaN) keeps its value exactly and leaks nothing into the moving positions."""
    flow = paths.Flow()
    n = 12
    x_T = torch.randn(2, 2, 2, dtype=F64, generator=torch.Generator().manual_seed(3))
    x_T[:, 0] = GMM.sample(2, generator=torch.Generator().manual_seed(4))  # the clean context
    columns = [torch.zeros(n + 1, dtype=F64), grids.uniform(n, flow, 0.98, 1e-3)]
    joint, alone = _joint_and_alone(name, flow, x_T, columns, [[False] * n, [True] * n])
    assert torch.equal(joint[:, 0], x_T[:, 0])
    assert torch.isfinite(joint).all()
    assert_close(joint[:, 1], alone[1], rtol=1e-10, atol=1e-12, msg=name)


@pytest.mark.parametrize("name", CONTINUOUS)
def test_a_zero_step_is_the_identity_on_the_whole_state(name):
    """After a few steps (multistep history filled), a step with t_next == t_cur everywhere
    returns x and every history field unchanged, bit for bit."""
    moves0 = [False, False, True, True, True, True]
    columns = [_column(grids.logsnr(4, VP, T0, 0.3), moves0), grids.logsnr(6, VP, T0, 0.3)]
    ts = torch.stack(columns, 1)[:, None].expand(-1, 3, -1)
    x_T = torch.randn(3, 2, 2, dtype=F64, generator=torch.Generator().manual_seed(5))
    gen = torch.Generator().manual_seed(6)
    _, state = sample(
        GMM.model(VP), x_T, path=VP, solver=name, grid=ts, generator=gen, return_state=True
    )
    solver, model = get_solver(name), Denoiser(GMM.model(VP), VP, "eps")
    t = ts[-1].clone()
    held = solver.step(state, t, t.clone(), model, i=6, n=12, noise=lambda z: torch.randn_like(z))
    for f in dataclasses.fields(state):
        old, new = getattr(state, f.name), getattr(held, f.name)
        olds, news = (old, new) if isinstance(old, tuple) else ((old,), (new,))
        for o, v in zip(olds, news):
            assert (o is None and v is None) or torch.equal(o, v), f"{name}: field {f.name} moved"


@pytest.mark.parametrize("name", ["dpmpp_3m", "unipc", "deis", "heun", "ddpm", "pc_langevin"])
def test_time_per_position_with_a_trailing_one_is_the_same(name):
    """A time of shape [B, L, 1] (broadcastable to x [B, L, D]) gives what [B, L] gives."""
    moves0 = [False] * 4 + [True] * 6
    columns = [_column(grids.logsnr(6, VP, T0, T1), moves0), grids.logsnr(10, VP, T0, T1)]
    ts = torch.stack(columns, 1)[:, None].expand(-1, 2, -1)
    x_T = torch.randn(2, 2, 2, dtype=F64, generator=torch.Generator().manual_seed(7))
    outs = [
        sample(
            GMM.model(VP),
            x_T,
            path=VP,
            solver=name,
            grid=g,
            generator=torch.Generator().manual_seed(8),
        )
        for g in (ts, ts[..., None])
    ]
    assert_close(outs[1], outs[0], rtol=1e-12, atol=1e-12, msg=name)


def test_a_grid_step_that_moves_nothing_is_refused():
    ts = torch.stack([grids.logsnr(4, VP, T0, T1)] * 2, 1)[:, None]  # [5, 1, 2]
    ts = torch.cat([ts[:2], ts[1:]])  # step 1 keeps every time
    x_T = torch.randn(1, 2, 2, dtype=F64)
    with pytest.raises(ValueError, match="every step must decrease some time"):
        sample(GMM.model(VP), x_T, path=VP, solver="unipc", grid=ts)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit internals during tracing
@pytest.mark.parametrize("name", ["unipc", "dpmpp_3m", "deis", "sde_dpmpp_2m", "ddpm"])
def test_a_paused_step_traces_as_one_graph(name):
    """The per-position path (order chosen per position with torch.where, paused positions held)
    reads nothing on the host: it captures with fullgraph=True and matches eager."""
    torch._dynamo.reset()
    solver = get_solver(name)
    model = Denoiser(lambda x, t: torch.tanh(x) * t[..., None] + 0.1 * x, VP, "eps")
    z = torch.randn(2, 3, 2)
    t0 = torch.tensor([[0.8, 0.8, 0.8]], dtype=F64).expand(2, -1)
    t1 = torch.tensor([[0.6, 0.8, 0.7]], dtype=F64).expand(2, -1)  # position 1 waits
    t2 = torch.tensor([[0.4, 0.6, 0.7]], dtype=F64).expand(2, -1)  # position 2 pauses
    state = solver.init(torch.randn(2, 3, 2), t0)
    state = solver.step(state, t0, t1, model, i=0, n=10, noise=lambda like: z)

    def one_step(state, t_cur, t_next):
        return solver.step(state, t_cur, t_next, model, i=1, n=10, noise=lambda like: z)

    out = torch.compile(one_step, fullgraph=True, backend="eager")(state, t1, t2)
    eager = one_step(state, t1, t2)
    assert torch.allclose(out.x, eager.x, rtol=1e-5, atol=1e-6), name
    assert torch.equal(out.x[:, 2], state.x[:, 2])
