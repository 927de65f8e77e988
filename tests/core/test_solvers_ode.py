"""ODE solvers against exact-score ground truth: identities, convergence orders, invariances."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import assert_close

from polydiff.core import grids, paths, sample
from polydiff.core.param import Denoiser
from polydiff.core.solvers import get_solver
from polydiff.core.solvers.ode import _order
from polydiff.core.testing import GaussianMixture, reference_ode

F64 = torch.float64


GMM = GaussianMixture([[-2.0, 0.5], [1.5, 1.0], [0.3, -2.0]], [0.3, 0.5, 0.2], [0.3, 0.4, 0.3])
VP = paths.VPLinear()
T0, T1 = 1.0, 1e-3


@pytest.fixture(scope="module")
def problem():
    x_T = torch.randn(8, 2, dtype=F64, generator=torch.Generator().manual_seed(1))
    return x_T, reference_ode(GMM, VP, x_T, T0, T1)


def _run(solver, x_T, steps, path=VP, model=None, **kw):
    model = model or GMM.model(path, "eps")
    return sample(
        model, x_T, path=path, solver=solver, steps=steps, grid="logsnr", t_start=T0, t_end=T1, **kw
    )


# name, NFE per step, (min, max) observed order for NFE 20..160
ORDERS = {
    "ddim": (1, (0.9, 1.1)),
    "euler": (1, (0.9, 1.1)),
    "heun": (2, (1.8, 2.5)),
    "dpmpp_2m": (1, (1.8, 2.2)),
    "dpmpp_2s": (2, (1.7, 2.3)),
    "unipc": (1, (2.5, 3.3)),
    "dpmpp_3m": (1, (2.7, 3.4)),
    "dpmpp_3s": (3, (2.7, 3.4)),
    "deis": (1, (2.3, 3.4)),
    "dpmpp_3m_shipped": (1, (1.8, 2.4)),
}


@pytest.mark.parametrize("name", list(ORDERS))
def test_convergence_order(problem, name):
    x_T, ref = problem
    per_step, (lo, hi) = ORDERS[name]
    nfes = [20, 40, 80, 160]
    errs = [(_run(name, x_T, nfe // per_step) - ref).norm(dim=1).mean().item() for nfe in nfes]
    order = -np.polyfit(np.log(nfes), np.log(errs), 1)[0]
    assert lo <= order <= hi, f"{name}: order {order:.2f}, errors {errs}"
    assert errs[-1] < errs[0]


def test_ddim_equals_euler_in_sigma_space(problem):
    x_T, _ = problem
    for path in (VP, paths.VE(), paths.Flow()):
        lo, hi = (0.01, 20.0) if isinstance(path, paths.VE) else (1e-3, 0.99)
        kw = {"grid": "uniform", "steps": 13, "t_start": hi, "t_end": lo}
        m = GMM.model(path, "x0")
        a = sample(m, x_T * path.sigma(torch.tensor(hi, dtype=F64)), path=path, solver="ddim", **kw)
        b = sample(
            m, x_T * path.sigma(torch.tensor(hi, dtype=F64)), path=path, solver="euler", **kw
        )
        assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_dpmpp_3m_step_equals_exact_integral_of_quadratic_interpolant():
    """The Taylor-consistent 3M step integrates the quadratic through the last three data
    predictions exactly: check against Gauss-Legendre quadrature of
    alpha_n int e^{-(lambda_n - l)} P(l) dl (independent of the phi-function algebra)."""
    g = torch.Generator().manual_seed(3)
    x, D = (
        torch.randn(4, 3, dtype=F64, generator=g),
        [torch.randn(4, 3, dtype=F64, generator=g) for _ in range(3)],
    )
    ts = torch.tensor([0.9, 0.7, 0.45, 0.3], dtype=F64)  # t_{-2}, t_{-1}, t_0, t_next
    lam = VP.log_snr(ts)

    class Fixed:
        path = VP

        def __call__(self, x_, t_):
            return D[2]

    solver = get_solver("dpmpp_3m")
    state = solver.init(x, ts[2]).replace(D_hist=(D[1], D[0]), lam_hist=(lam[1], lam[0]))
    out = solver.step(state, ts[2], ts[3], Fixed(), i=5, n=20, noise=None).x
    nodes, weights = np.polynomial.legendre.leggauss(20)
    l0, ln = float(lam[2]), float(lam[3])
    ls = 0.5 * (ln - l0) * nodes + 0.5 * (ln + l0)
    integral = torch.zeros_like(x)
    for l_q, w_q in zip(ls, weights):
        basis = [
            np.prod(
                [
                    (l_q - float(lam[k])) / (float(lam[j]) - float(lam[k]))
                    for k in range(3)
                    if k != j
                ]
            )
            for j in range(3)
        ]
        P = sum(b * D[j] for j, b in enumerate(basis))
        integral = integral + 0.5 * (ln - l0) * w_q * np.exp(-(ln - l_q)) * P
    s0, sn, an = VP.sigma(ts[2]), VP.sigma(ts[3]), VP.alpha(ts[3])
    assert_close(out, sn / s0 * x + an * integral, rtol=1e-11, atol=1e-12)
    shipped = (
        get_solver("dpmpp_3m_shipped").step(state, ts[2], ts[3], Fixed(), i=5, n=20, noise=None).x
    )
    assert (shipped - out).abs().max() > 1e-4  # the shipped formula is a different (2nd-order) step


def test_ode_solution_invariant_across_paths(problem):
    """VP, VE and flow share the probability-flow ODE in (x/alpha, sigma/alpha): a data-prediction
    solver on a shared logSNR grid gives the same x/alpha."""
    x_T, _ = problem
    lam = VP.log_snr(grids.logsnr(15, VP, T0, T1))
    outs = []
    for path in (VP, paths.VE(), paths.Flow()):
        ts = path.t_of_log_snr(lam)
        a0 = path.alpha(ts[0])
        x_start = a0 * (
            x_T * VP.sigma(torch.tensor(T0, dtype=F64)) / VP.alpha(torch.tensor(T0, dtype=F64))
        )
        x = sample(
            GMM.model(path, "v"), x_start, path=path, solver="dpmpp_2m", grid=ts, prediction="v"
        )
        outs.append(x / path.alpha(ts[-1]))
    assert_close(outs[1], outs[0], rtol=1e-9, atol=1e-9)
    assert_close(outs[2], outs[0], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("solver", ["dpmpp_3m", "unipc", "deis", "heun", "dpmpp_3s"])
def test_per_sample_time_equals_separate_runs(problem, solver):
    x_T, _ = problem
    x_T = x_T[:3]
    t_ends = torch.tensor([1e-3, 0.01, 0.05], dtype=F64)
    ts = torch.stack([grids.logsnr(12, VP, T0, float(te)) for te in t_ends], dim=1)  # [n+1, B]
    together = sample(GMM.model(VP, "eps"), x_T, path=VP, solver=solver, grid=ts)
    for b in range(3):
        alone = sample(GMM.model(VP, "eps"), x_T[b : b + 1], path=VP, solver=solver, grid=ts[:, b])
        assert_close(together[b : b + 1], alone, rtol=1e-10, atol=1e-12)


def test_per_position_time():
    """Time of shape [B, L] (e.g. one per token) with an elementwise exact denoiser: each position
    follows its own grid exactly as if run alone."""
    m, s2 = 0.7, 0.25

    def model(x, t):  # x0 prediction for i.i.d. N(m, s2) entries, time per entry
        a, s = VP.alpha(t.double()), VP.sigma(t.double())
        return m + a * s2 / (a**2 * s2 + s**2) * (x - a * m)

    x_T = torch.randn(2, 4, dtype=F64, generator=torch.Generator().manual_seed(2))
    t_end = torch.tensor([[1e-3, 0.01, 0.1, 0.3], [0.02, 1e-3, 0.2, 0.05]], dtype=F64)
    ts = torch.stack([grids.logsnr(9, VP, T0, float(te)) for te in t_end.reshape(-1)], 1)
    ts = ts.reshape(10, 2, 4)
    together = sample(model, x_T, path=VP, solver="unipc", grid=ts, prediction="x0")
    for b in range(2):
        for j in range(4):
            alone = sample(
                lambda x, t: model(x, t[:, None].expand_as(x)),
                x_T[b : b + 1, j : j + 1],
                path=VP,
                solver="unipc",
                grid=ts[:, b, j],
                prediction="x0",
            )
            assert_close(together[b, j], alone[0, 0], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("solver", ["dpmpp_3m", "unipc", "deis"])
def test_state_index_carries_multistep_history(problem, solver):
    """Reindexing particles mid-run (as SMC does) must move their history too."""
    x_T, _ = problem
    s = get_solver(solver)
    model = Denoiser(GMM.model(VP, "eps"), VP, "eps")
    ts = grids.logsnr(10, VP, T0, T1)
    perm = torch.tensor([3, 3, 0, 7, 1, 2, 5, 4])

    def run(x, idx_at=None):
        state = s.init(x, ts[0])
        for i in range(10):
            if i == idx_at:
                state = state.index(perm)
            state = s.step(state, ts[i], ts[i + 1], model, i=i, n=10, noise=None)
        return state.x

    assert_close(run(x_T, idx_at=5), run(x_T)[perm], rtol=1e-12, atol=1e-12)


def test_order_policy_is_python_int():
    assert [_order(3, i, 20, None) for i in range(4)] == [1, 2, 3, 3]
    assert [_order(3, i, 10, None) for i in range(7, 10)] == [3, 2, 1]  # short grid: lower at end
    assert [_order(3, i, 10, False) for i in range(7, 10)] == [3, 3, 3]
    assert [_order(2, i, 30, True) for i in range(28, 30)] == [2, 1]


def test_mean_reverting_sampler_is_dpmpp_on_x_minus_mu():
    path = paths.OUVE()
    g = torch.Generator().manual_seed(4)
    mu = torch.randn(4, 2, dtype=F64, generator=g)
    x_T = mu + path.sigma(torch.tensor(1.0, dtype=F64)) * torch.randn(4, 2, dtype=F64, generator=g)
    ref = reference_ode(GMM, path, x_T, 1.0, 0.03, mu=mu)
    errs = []
    for n in (10, 20, 40):
        x = sample(
            GMM.model(path, "score", mu=mu),
            x_T,
            path=path,
            solver="dpmpp_2m",
            steps=n,
            prediction="score",
            mu=mu,
        )
        errs.append((x - ref).norm(dim=1).mean().item())
    assert errs[2] < errs[1] < errs[0] and errs[2] < 2e-3, errs
    slope = np.log2(errs[1] / errs[2])
    assert slope > 1.7, errs


def test_float32_and_half_inputs_keep_dtype(problem):
    x_T, ref = problem
    seen = set()

    def model(x, t):
        seen.add((x.dtype, t.dtype))
        return GMM.model(VP, "eps")(x.double(), t.double()).to(x.dtype)

    for dtype in (torch.float32, torch.bfloat16):
        x = _run("dpmpp_2m", x_T.to(dtype), 20, model=model)
        assert x.dtype == dtype and (dtype, dtype) in seen  # the network sees the caller's dtype
        assert (x.double() - ref).norm(dim=1).mean() < 0.1
