"""Probability-flow ODE solvers on affine paths, all driven by the data prediction D = E[x0 | x_t].

Notation as in Lu et al. 2022 ("DPM-Solver++: Fast Solver for Guided Sampling of Diffusion
Probabilistic Models"): lambda = log(alpha/sigma), h = lambda_next - lambda > 0, and the exact
solution of the data-prediction ODE (variation of constants)

    x_t = sigma_t/sigma_s x_s + alpha_t int_0^h e^{-(h-u)} D(lambda_s + u) du.

Expanding D in Taylor series gives the phi functions (h phi_{k+1} = (1/k! - phi_k)),
    h phi_1 = 1 - e^{-h},  h phi_2 = (h - 1 + e^{-h})/h,  h phi_3 = (h^2/2 - h + 1 - e^{-h})/h^2,
so that x_t = sigma_t/sigma_s x_s + alpha_t (h phi_1 D + h phi_2 (h D') + h phi_3 (h^2 D'') + ...).

Paused times: on a per-sample / per-position grid a position whose time does not move (h = 0)
is held exactly (``hold``), pushes no history, and keeps every ratio finite (h -> 1 where it is
0 as a divisor, invalid history nodes -> harmless constants). Multistep solvers count each
position's valid history (``n_hist``) and pick each position's order with ``torch.where``. With a
time shared by the batch (0-dim) nothing can pause and the plain path runs unchanged.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import torch
from torch import Tensor

from polydiff.core.param import from_x0
from polydiff.core.solvers.base import (
    Noise,
    SolverBase,
    State,
    advance,
    expand_like,
    hold,
    paused_mask,
    per_step_coefficients,
    register_solver,
    select,
)

LAMBDA_CLAMP = 50.0  # keeps h finite when a grid touches alpha = 0 or sigma = 0


def _lam(path, t: Tensor) -> Tensor:
    return path.log_snr(t).clamp(-LAMBDA_CLAMP, LAMBDA_CLAMP)


def _nonzero(h: Tensor) -> Tensor:
    """h as a divisor: 1 where it is 0 (a paused position), so every ratio stays finite."""
    return torch.where(h == 0, 1.0, h)


def _phis(h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(h phi_1, h phi_2, h phi_3) for the data-prediction exponential integrator; exactly 0 at
    h = 0 (their limits), without dividing by zero."""
    em = torch.expm1(-h)  # e^{-h} - 1
    hs = _nonzero(h)
    return -em, (h + em) / hs, (0.5 * h * h - h - em) / (hs * hs)


def _x(c: Tensor, x: Tensor) -> Tensor:
    # expand_like, minus the reshape of a 0-dim coefficient (it broadcasts as it is): every use
    # here multiplies or divides a tensor shaped like x
    if c.dtype != x.dtype:
        c = c.to(dtype=x.dtype)
    return c if c.ndim == 0 else expand_like(c, x)


def _order(order: int, i: int, n: int, lower_order_final: bool | None) -> int:
    """Order used at step i of n: warm up from 1, and lower it on the last steps if asked
    (``None``: only for short grids, n < 15, as diffusers does)."""
    p = min(order, i + 1)
    if lower_order_final or (lower_order_final is None and n < 15):
        p = min(p, n - i)
    return p


def _check_choices(solver: str, **options: tuple) -> None:
    """One ValueError naming the first option (``name=(value, allowed)``) outside its values."""
    for name, (value, allowed) in options.items():
        if value not in allowed:
            raise ValueError(f"{solver} {name} must be one of {allowed}, got {value!r}")


def _by_order(available: Tensor | None, p: int, update: Callable[[int], Tensor]) -> Tensor:
    """Per position, the update of order min(p, available) (at least 1): every candidate order up
    to the Python-int cap p, chosen with ``torch.where`` (no host sync). ``available`` None (a
    hand-made state without a count): order p everywhere."""
    if available is None:
        return update(p)
    out = update(1)
    for q in range(2, p + 1):
        out = select(available >= q, update(q), out)
    return out


def _per_order(
    state: State, paused: Tensor | None, p: int, update: Callable[[int, Tensor | None], Tensor]
) -> Tensor:
    """x_next of a multistep solver from ``update(order, n_hist)``: of order p for a time shared
    by the batch (``paused`` None); else per position of order min(p, valid history + 1), and
    exactly x where the position is paused."""
    if paused is None:
        return update(p, None)
    n_hist = state.n_hist
    available = None if n_hist is None else n_hist + 1
    return hold(paused, state.x, _by_order(available, p, lambda q: update(q, n_hist)))


def _valid_ratio(r: Tensor, n_hist: Tensor | None, need: int, fallback: float) -> Tensor:
    # a history ratio where the position has ``need`` valid entries, else a harmless constant
    # (the candidate using it is not selected there; this only keeps it finite)
    return r if n_hist is None else torch.where(n_hist >= need, r, fallback)


def _push(state: State, paused: Tensor | None, k: int, **newest: Tensor) -> dict:
    """Push the newest entries onto each history tuple and count the valid ones (at most k);
    paused positions push nothing."""
    out = {
        name: hold(paused, getattr(state, name), (value, *getattr(state, name)[:-1]))
        for name, value in newest.items()
    }
    if state.n_hist is not None:
        out["n_hist"] = hold(paused, state.n_hist, torch.clamp(state.n_hist + 1, max=k))
    return out


# ---------------------------------------------------------------------------------------------
@register_solver("ddim")
@register_solver("ddpm", eta=1.0)
class DDIM(SolverBase):
    """DDIM (Song et al. 2021, "Denoising Diffusion Implicit Models", Eq. 12), for any affine path:
    x_next = alpha_next D + sqrt(sigma_next^2 - c^2) eps_hat + c z with c = eta * std of
    q(x_next | x, D). eta = 0 is the deterministic DDIM (= DPM-Solver++ order 1); eta = 1 samples
    the posterior q(x_next | x_t, x0 = D), i.e. DDPM ancestral sampling (Ho et al. 2020, Eq. 6-7).
    """

    allows_paused_times = True

    def __init__(self, eta: float = 0.0) -> None:
        if eta < 0:
            raise ValueError(f"DDIM eta must be >= 0, got {eta}")
        self.eta = float(eta)
        self.stochastic = self.eta > 0

    def coefficients(self, path, t: Tensor, t_next: Tensor) -> tuple[Tensor, ...]:
        """(alpha, sigma, alpha_n, sqrt(sigma_n^2 - c^2), c), elementwise in time."""
        a, s = path.alpha(t), path.sigma(t)
        a_n, s_n = path.alpha(t_next), path.sigma(t_next)
        if self.eta == 0:
            return a, s, a_n, s_n, torch.zeros_like(s_n)
        # std of q(x_next | x_t, x0): sigma_{t|s} sigma_s / sigma_t with s = next (Ho et al. Eq. 7)
        var_ts = s**2 - (a / a_n) ** 2 * s_n**2
        c = self.eta * torch.sqrt((var_ts * s_n**2 / s**2).clamp_min(0))
        c = torch.minimum(c, s_n)
        return a, s, a_n, torch.sqrt(s_n**2 - c**2), c

    def step(self, state, t_cur, t_next, model, *, i: int, n: int, noise: Noise) -> State:
        x = state.x
        a, s, a_n, s_eps, c = per_step_coefficients(
            model.path, t_cur, t_next, self.coefficients, x.dtype
        )
        D = model(x, t_cur)
        eps = (x - _x(a, x) * D) / _x(s, x)
        x_next = _x(a_n, x) * D + _x(s_eps, x) * eps
        if self.eta != 0:
            x_next = x_next + _x(c, x) * noise(x)
        return advance(state, x_next, t_cur, t_next)


# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class MultistepState(State):
    """x plus the previous data predictions D_{i-1}, D_{i-2}, ... and their lambdas; ``n_hist``
    (shaped like the time) counts the valid entries of each position."""

    D_hist: tuple[Tensor, ...] = ()
    lam_hist: tuple[Tensor, ...] = ()
    n_hist: Tensor | None = None


def _empty_history(x: Tensor, t: Tensor, k: int) -> dict:
    return {
        "D_hist": tuple(torch.zeros_like(x) for _ in range(k)),
        "lam_hist": tuple(torch.zeros_like(t, dtype=torch.float64) for _ in range(k)),
        "n_hist": torch.zeros_like(t, dtype=torch.long),
    }


def _dpmpp_coefficients(path, t: Tensor, t_next: Tensor) -> tuple[Tensor, ...]:
    """(lambda, h, sigma_n/sigma, alpha_n h phi_1, alpha_n h phi_2, alpha_n h phi_3) of a
    DPM-Solver++ step, elementwise in time (h is returned as a divisor: 1 where it is 0)."""
    lam, lam_n = _lam(path, t), _lam(path, t_next)
    h = lam_n - lam
    hphi1, hphi2, hphi3 = _phis(h)
    a_n = path.alpha(t_next)
    s_ratio = path.sigma(t_next) / path.sigma(t)
    return lam, _nonzero(h), s_ratio, a_n * hphi1, a_n * hphi2, a_n * hphi3


@register_solver("dpmpp_2m", order=2)
@register_solver("dpmpp_3m", order=3)
@register_solver("dpmpp_3m_shipped", order=3, variant="shipped")
class DPMSolverPPMultistep(SolverBase):
    """DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2) and a Taylor-consistent 3M.

    Order 2 uses the paper's update D = (1 + 1/(2r)) D_0 - 1/(2r) D_1 ("midpoint"), or
    h phi_2 (D_0 - D_1)/r with ``solver_type="taylor"``.

    Order 3 estimates h D' and h^2 D'' from three past predictions (r0 = h_{-1}/h, r1 = h_{-2}/h):
        D1_0 = (D_0 - D_1)/r0,  D1_1 = (D_1 - D_2)/r1,
        h D'    = D1_0 + r0/(r0 + r1) (D1_0 - D1_1),
        h^2 D'' = 2 (D1_0 - D1_1)/(r0 + r1)          (see docs/dpmpp3m.md for the derivation)
    and x_next = sigma_n/sigma x + alpha_n (h phi_1 D_0 + h phi_2 h D' + h phi_3 h^2 D'').
    ``variant="shipped"`` reproduces dpm-solver / diffusers, whose h^2 D'' estimate lacks the
    factor 2 (measured global order ~2 instead of 3), with their midpoint form on the order-2
    steps (warm-up, second-to-last); the Taylor 3M takes the Taylor form there
    (``solver_type=None`` picks these).

    ``lower_order_final=True`` (default) drops to order 2 and then 1 on the last two steps;
    ``None`` does so only on grids shorter than 15 steps, as diffusers does. Measured against
    diffusers on its own time-uniform grids (benchmarks/core.py, 6 Gaussian mixtures, 5-40 NFE):
    the large final lambda jump of those grids makes higher-order extrapolation on the last steps
    2-10x worse from 15 steps on, and lowering the order there is never worse at any NFE.
    """

    allows_paused_times = True

    def __init__(
        self,
        order: int = 2,
        *,
        variant: str = "taylor",
        solver_type: str | None = None,
        lower_order_final: bool | None = True,
    ) -> None:
        if solver_type is None:
            solver_type = "taylor" if order == 3 and variant == "taylor" else "midpoint"
        _check_choices(
            "DPM-Solver++ multistep",
            order=(order, (1, 2, 3)),
            variant=(variant, ("taylor", "shipped")),
            solver_type=(solver_type, ("midpoint", "taylor")),
        )
        self.order, self.variant, self.solver_type = order, variant, solver_type
        self.lower_order_final = lower_order_final

    def init(self, x: Tensor, t: Tensor) -> MultistepState:
        return MultistepState(x=x, **_empty_history(x, t, self.order - 1))

    def step(self, state, t_cur, t_next, model, *, i: int, n: int, noise: Noise) -> State:
        x = state.x
        coef = per_step_coefficients(model.path, t_cur, t_next, _dpmpp_coefficients)
        D0 = model(x, t_cur)
        p = _order(self.order, i, n, self.lower_order_final)
        paused = paused_mask(t_cur, t_next)
        x_next = _per_order(state, paused, p, lambda q, nh: self._update(x, D0, coef, state, q, nh))
        k = self.order - 1
        if not k:
            return state.replace(x=x_next)
        return state.replace(x=x_next, **_push(state, paused, k, D_hist=D0, lam_hist=coef[0]))

    def _update(self, x, D0, coef, state, q: int, n_hist: Tensor | None = None) -> Tensor:
        """The order-q update from (x, D0) and the history (``n_hist`` given: per-position mode,
        ratios of missing history entries kept finite)."""
        lam, h, s_ratio, c1, c2, c3 = coef
        x_next = _x(s_ratio, x) * x
        if q == 1:
            return x_next + _x(c1, x) * D0
        r0 = _valid_ratio((lam - state.lam_hist[0]) / h, n_hist, 1, 1.0)
        D1 = (D0 - state.D_hist[0]) / _x(r0, x)
        if q == 2:
            if self.solver_type == "midpoint":
                return x_next + _x(c1, x) * (D0 + 0.5 * D1)
            return x_next + _x(c1, x) * D0 + _x(c2, x) * D1
        r1 = _valid_ratio((state.lam_hist[0] - state.lam_hist[1]) / h, n_hist, 2, 1.0)
        D1_0 = D1
        D1_1 = (state.D_hist[0] - state.D_hist[1]) / _x(r1, x)
        hD1 = D1_0 + _x(r0 / (r0 + r1), x) * (D1_0 - D1_1)
        k2 = 2.0 if self.variant == "taylor" else 1.0
        h2D2 = _x(k2 / (r0 + r1), x) * (D1_0 - D1_1)
        return x_next + _x(c1, x) * D0 + _x(c2, x) * hD1 + _x(c3, x) * h2D2


# ---------------------------------------------------------------------------------------------
@register_solver("dpmpp_2s", order=2)
@register_solver("dpmpp_3s", order=3)
class DPMSolverPPSinglestep(SolverBase):
    """Singlestep DPM-Solver++ (Lu et al. 2022): order 2 is DPM-Solver++(2S), Algorithm 1, with an
    intermediate point at lambda + r1 h (r1 = 1/2); order 3 evaluates at r1 = 1/3, r2 = 2/3 and
    uses the Taylor form h phi_2 h D' + h phi_3 h^2 D'' (DPM-Solver-3's "taylor" variant, Lu et
    al. 2022a, carried to data prediction). ``nfe_per_step = order``."""

    allows_paused_times = True

    def __init__(self, order: int = 2) -> None:
        _check_choices("DPM-Solver++ singlestep", order=(order, (1, 2, 3)))
        self.order = order
        self.nfe_per_step = order

    @staticmethod
    def _sub(path, x, D0, lam, rh, sigma, D1_term=None):
        """First- (or second-) order move from (x, lambda) to lambda + rh; returns (u, t_u)."""
        t_u = path.t_of_log_snr(lam + rh)
        p1, p2, _ = _phis(rh)
        a_u = path.alpha(t_u)
        u = _x(path.sigma(t_u) / sigma, x) * x + _x(a_u * p1, x) * D0
        if D1_term is not None:
            u = u + _x(a_u * p2, x) * D1_term
        return u, t_u

    def step(self, state, t_cur, t_next, model, *, i: int, n: int, noise: Noise) -> State:
        x, path = state.x, model.path
        lam, lam_n = _lam(path, t_cur), _lam(path, t_next)
        h = lam_n - lam
        sigma = path.sigma(t_cur)
        hphi1, hphi2, hphi3 = _phis(h)
        a_n = path.alpha(t_next)
        x_next = _x(path.sigma(t_next) / sigma, x) * x
        D0 = model(x, t_cur)
        if self.order == 1:
            return advance(state, x_next + _x(a_n * hphi1, x) * D0, t_cur, t_next)
        if self.order == 2:
            r1 = 0.5
            u, t_u = self._sub(path, x, D0, lam, r1 * h, sigma)
            D = (1 - 1 / (2 * r1)) * D0 + 1 / (2 * r1) * model(u, t_u)
            return advance(state, x_next + _x(a_n * hphi1, x) * D, t_cur, t_next)
        r1, r2 = 1.0 / 3.0, 2.0 / 3.0
        u1, t_1 = self._sub(path, x, D0, lam, r1 * h, sigma)
        D1_0 = (model(u1, t_1) - D0) / r1
        # second stage: needs h D' to O(h), from the first intermediate point
        u2, t_2 = self._sub(path, x, D0, lam, r2 * h, sigma, D1_term=r2 * D1_0)
        D1_1 = (model(u2, t_2) - D0) / r2
        hD1 = (r2 * D1_0 - r1 * D1_1) / (r2 - r1)
        h2D2 = 2 * (D1_1 - D1_0) / (r2 - r1)
        x_next = (
            x_next + _x(a_n * hphi1, x) * D0 + _x(a_n * hphi2, x) * hD1 + _x(a_n * hphi3, x) * h2D2
        )
        return advance(state, x_next, t_cur, t_next)


# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class UniPCState(MultistepState):
    """Adds x at the previous time (after correction), which the corrector restarts from, and
    the coefficients of each position's last moving step (the corrector redoes that step)."""

    x_prev: Tensor | None = None
    t_prev: Tensor | None = None
    coef_prev: tuple[Tensor, ...] = ()


def _unipc_g(h: Tensor, p: int, variant: str) -> list[Tensor]:
    """Right-hand sides g_m = m! h phi_{m+1}(h) / B(h), m = 1..p (Zhao et al. 2023, UniPC),
    with B(h) = h ("bh1") or 1 - e^{-h} ("bh2")."""
    B = h if variant == "bh1" else -torch.expm1(-h)
    phi = -torch.expm1(-h) / h  # phi_1
    g = []
    for m in range(1, p + 1):
        phi = (1.0 / math.factorial(m) - phi) / h  # phi_{m+1}
        g.append(math.factorial(m) * h * phi / B)
    return g


def _solve_rhos(rks: list[Tensor], g: list[Tensor]) -> list[Tensor]:
    """Solve sum_k a_k r_k^(m-1) = g_m (m = 1..p) for a (batched over the time's shape)."""
    p = len(rks)
    rks = [r.expand_as(g[0]) for r in rks]
    R = torch.stack([torch.stack([r**m for r in rks], -1) for m in range(p)], -2)
    a = torch.linalg.solve(R, torch.stack(g, -1))
    return list(a.unbind(-1))


@register_solver("unipc", order=2)
class UniPC(SolverBase):
    """UniPC (Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling
    of Diffusion Models", Algorithms 1-3), data prediction.

    Predictor UniP-p: x_next = sigma_n/sigma x + alpha_n h phi_1 D_0 + alpha_n B(h) sum_k a_k D_k
    with D_k = (D(lambda_k) - D_0)/r_k over p - 1 past points (a = 1/2 for p = 2, as the paper).
    Corrector UniC-p: the same update of the *previous* step redone with the model output at the
    new point (r = 1) added, which raises the order by one at no extra evaluation. The last step is
    not corrected (it has no further evaluation). As in the reference implementation, the last
    steps lower the order by default (``lower_order_final=True``): on grids whose last step is a
    large jump in lambda (time-uniform grids) this is far more accurate, and on logSNR grids it
    does not change the order (measured 2.91 either way).
    """

    allows_paused_times = True

    def __init__(
        self,
        order: int = 2,
        *,
        variant: str = "bh2",
        corrector: bool = True,
        lower_order_final: bool | None = True,
    ) -> None:
        _check_choices("UniPC", order=(order, (1, 2, 3)), variant=(variant, ("bh1", "bh2")))
        self.order, self.variant, self.corrector = order, variant, corrector
        self.lower_order_final = lower_order_final

    def init(self, x: Tensor, t: Tensor) -> UniPCState:
        zero = torch.zeros_like(t, dtype=torch.float64)
        one = torch.ones_like(zero)
        return UniPCState(
            x=x,
            x_prev=torch.zeros_like(x),
            t_prev=t,
            coef_prev=(zero, one, one, zero, zero),  # (lambda, h, ...) of a step not taken yet
            **_empty_history(x, t, self.order),
        )

    def coefficients(self, path, t: Tensor, t_next: Tensor) -> tuple[Tensor, ...]:
        """(lambda, h, sigma_n/sigma, alpha_n h phi_1, alpha_n B(h)), elementwise in time (h is
        returned as a divisor: 1 where it is 0)."""
        lam, lam_n = _lam(path, t), _lam(path, t_next)
        h = lam_n - lam
        hphi1 = -torch.expm1(-h)
        B = h if self.variant == "bh1" else hphi1
        a_n = path.alpha(t_next)
        return lam, _nonzero(h), path.sigma(t_next) / path.sigma(t), a_n * hphi1, a_n * B

    def _update(self, x, D0, coef, past, new=None, n_hist=None, first=0):
        """x at lambda_n from (x, D0 at lambda) and past (D, lambda) pairs (+ corrector point);
        ``coef`` are the step's scalars from :meth:`coefficients`. ``n_hist`` given (per-position
        mode): past entry j (history index ``first + j``) of a position without it gets a node
        2 + j, distinct from the true nodes (< 0) and the corrector's (1), so R stays regular."""
        lam, h, s_ratio, c1, cB = coef
        out = _x(s_ratio, x) * x + _x(c1, x) * D0
        rks = [
            _valid_ratio((lam_k - lam) / h, n_hist, first + j + 1, 2.0 + j)
            for j, (_, lam_k) in enumerate(past)
        ]
        Dks = [(D_k - D0) / _x(r, x) for (D_k, _), r in zip(past, rks)]
        if new is not None:
            rks.append(torch.ones_like(h))
            Dks.append(new - D0)
        if not Dks:
            return out
        if new is not None and len(Dks) == 1:
            rhos = [torch.full_like(h, 0.5)]  # UniC-1
        elif new is None and len(Dks) == 1:
            rhos = [torch.full_like(h, 0.5)]  # UniP-2
        else:
            rhos = _solve_rhos(rks, _unipc_g(h, len(rks), self.variant))
        res = sum(_x(rho, x) * Dk for rho, Dk in zip(rhos, Dks))
        return out + _x(cB, x) * res

    def step(self, state, t_cur, t_next, model, *, i: int, n: int, noise: Noise) -> State:
        path = model.path
        coef = per_step_coefficients(path, t_cur, t_next, self.coefficients)
        D0 = model(state.x, t_cur)
        x = state.x
        hist = list(zip(state.D_hist, state.lam_hist))
        p = _order(self.order, i, n, self.lower_order_final)
        paused = paused_mask(t_cur, t_next)
        if paused is None:
            if self.corrector and i > 0:
                # redo the previous step (from t_prev, order p_c) with D0 as an extra node at r = 1
                p_c = _order(self.order, i - 1, n, self.lower_order_final)
                coef_prev = per_step_coefficients(path, state.t_prev, t_cur, self.coefficients)
                x = self._update(state.x_prev, hist[0][0], coef_prev, hist[1:p_c], D0)
            x_next = self._update(x, D0, coef, hist[: p - 1])
        else:
            x_next, x = self._per_position(state, hist, coef, D0, paused, i, n, p)
        return state.replace(
            x=x_next,
            x_prev=hold(paused, state.x_prev, x),
            t_prev=hold(paused, state.t_prev, t_cur),
            coef_prev=hold(paused, state.coef_prev, coef),
            **_push(state, paused, self.order, D_hist=D0, lam_hist=coef[0]),
        )

    def _per_position(self, state, hist, coef, D0, paused, i: int, n: int, p: int):
        """(x_next, corrected x) when positions may pause: a position is corrected where it has
        moved before (n_hist > 0) and moves now, redoing its own last moving step (stored
        ``coef_prev``: it may lie several grid steps back); orders per position."""
        n_hist, x = state.n_hist, state.x
        if self.corrector and i > 0:  # at i = 0 no position has moved yet
            p_c = _order(self.order, i - 1, n, self.lower_order_final)
            corrected = _by_order(
                n_hist,
                p_c,
                lambda q: self._update(
                    state.x_prev, hist[0][0], state.coef_prev, hist[1:q], D0, n_hist, first=1
                ),
            )
            moved = ~paused if n_hist is None else ~paused & (n_hist > 0)
            x = select(moved, corrected, x)
        x_next = _per_order(
            state, paused, p, lambda q, nh: self._update(x, D0, coef, hist[: q - 1], n_hist=nh)
        )
        return x_next, x


# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class DEISState(State):
    eps_hist: tuple[Tensor, ...] = ()
    rho_hist: tuple[Tensor, ...] = ()
    n_hist: Tensor | None = None  # valid history entries per position


def _lagrange_weights(nodes: list[Tensor], delta: Tensor) -> list[Tensor]:
    """int_0^delta L_j(u) du for the Lagrange basis on ``nodes`` (shifted so nodes[0] = 0)."""
    if len(nodes) == 1:
        return [delta]
    weights = []
    for j, u_j in enumerate(nodes):
        others = [u for k, u in enumerate(nodes) if k != j]
        denom = _prod([u_j - u for u in others])
        if len(others) == 1:  # int_0^d (u - p) du
            (p,) = others
            integral = 0.5 * delta**2 - p * delta
        else:  # int_0^d (u - p)(u - q) du
            p, q = others
            integral = delta**3 / 3 - (p + q) * delta**2 / 2 + p * q * delta
        weights.append(integral / denom)
    return weights


def _prod(values: list[Tensor]) -> Tensor:
    out = values[0]
    for v in values[1:]:
        out = out * v
    return out


@register_solver("deis", order=3)
class DEIS(SolverBase):
    """DEIS-rhoAB (Zhang & Chen 2023, "Fast Sampling of Diffusion Models with Exponential
    Integrator", rhoAB): in rho = sigma/alpha and x~ = x/alpha the probability-flow ODE is
    dx~/drho = eps_hat, integrated by variable-step Adams-Bashforth: the last ``order`` noise
    predictions are interpolated by a Lagrange polynomial in rho and integrated exactly.
    Order 1 is DDIM."""

    allows_paused_times = True
    needs_finite_log_snr = True  # rho = sigma/alpha must be finite

    def __init__(self, order: int = 3, *, lower_order_final: bool | None = None) -> None:
        _check_choices("DEIS", order=(order, (1, 2, 3)))
        self.order, self.lower_order_final = order, lower_order_final

    def init(self, x: Tensor, t: Tensor) -> DEISState:
        k = self.order - 1
        return DEISState(
            x=x,
            eps_hist=tuple(torch.zeros_like(x) for _ in range(k)),
            rho_hist=tuple(torch.zeros_like(t, dtype=torch.float64) for _ in range(k)),
            n_hist=torch.zeros_like(t, dtype=torch.long),
        )

    def step(self, state, t_cur, t_next, model, *, i: int, n: int, noise: Noise) -> State:
        x, path = state.x, model.path
        a, s = path.alpha(t_cur), path.sigma(t_cur)
        a_n, s_n = path.alpha(t_next), path.sigma(t_next)
        rho, rho_n = s / a, s_n / a_n
        eps = (x - _x(a, x) * model(x, t_cur)) / _x(s, x)
        p = _order(self.order, i, n, self.lower_order_final)
        paused = paused_mask(t_cur, t_next)
        x_next = _per_order(
            state,
            paused,
            p,
            lambda q, nh: _x(a_n, x) * self._update(x, a, rho, rho_n, eps, state, q, nh),
        )
        k = self.order - 1
        if not k:
            return state.replace(x=x_next)
        return state.replace(x=x_next, **_push(state, paused, k, eps_hist=eps, rho_hist=rho))

    @staticmethod
    def _update(x, a, rho, rho_n, eps, state, q: int, n_hist: Tensor | None = None) -> Tensor:
        """x/alpha at rho_n by the order-q Adams-Bashforth step. ``n_hist`` given: a node a
        position lacks becomes -1 - j (true nodes are > 0), so no Lagrange denominator is 0."""
        eps_all = [eps, *state.eps_hist[: q - 1]]
        nodes = [torch.zeros_like(rho)] + [
            _valid_ratio(r - rho, n_hist, j + 1, -1.0 - j)
            for j, r in enumerate(state.rho_hist[: q - 1])
        ]
        weights = _lagrange_weights(nodes, rho_n - rho)
        return x / _x(a, x) + sum(_x(w, x) * e for w, e in zip(weights, eps_all))


# ---------------------------------------------------------------------------------------------
def _direction(path, x: Tensor, t: Tensor, D: Tensor, space: str) -> tuple[Tensor, Tensor]:
    """(scaled x, dx/ds) where s is the integration variable: sigma~ = sigma/alpha or t."""
    if space == "sigma":
        a, s = path.alpha(t), path.sigma(t)
        x_tilde = x / _x(a, x)
        return x_tilde, (x_tilde - D) / _x(s / a, x)
    return x, from_x0(D, "velocity", x, t, path)


def _variable(path, t: Tensor, space: str) -> Tensor:
    return path.sigma(t) / path.alpha(t) if space == "sigma" else t


def _unscale(path, x_s: Tensor, t: Tensor, space: str) -> Tensor:
    return _x(path.alpha(t), x_s) * x_s if space == "sigma" else x_s


def _sigma_coefficients(path, t: Tensor, t_next: Tensor) -> tuple[Tensor, ...]:
    """(alpha, sigma~, alpha_n, sigma~_n, sigma~_n - sigma~) with sigma~ = sigma/alpha, elementwise
    in time."""
    a, a_n = path.alpha(t), path.alpha(t_next)
    sig, sig_n = path.sigma(t) / a, path.sigma(t_next) / a_n
    return a, sig, a_n, sig_n, sig_n - sig


def _check_space(space: str) -> None:
    if space not in ("sigma", "t"):
        raise ValueError(f"space must be 'sigma' (EDM's scaled ODE) or 't', got {space!r}")


@register_solver("euler")
@register_solver("flow_euler", space="t")
class Euler(SolverBase):
    """Euler on the probability-flow ODE. ``space="sigma"``: EDM's form (Karras et al. 2022,
    Algorithm 1 without the correction) on x~ = x/alpha, dx~/dsigma~ = (x~ - D)/sigma~, which is
    algebraically DDIM. ``space="t"``: Euler in the path's own time on the velocity
    alpha' D + sigma' eps (the usual flow-matching sampler)."""

    allows_paused_times = True

    def __init__(self, space: str = "sigma") -> None:
        _check_space(space)
        self.space = space
        self.needs_finite_log_snr = space == "sigma"  # sigma/alpha is infinite where alpha = 0

    def step(self, state, t_cur, t_next, model, *, i: int, n: int, noise: Noise) -> State:
        x, path = state.x, model.path
        if self.space == "sigma":  # the same update with the step's scalars tabulated
            a, sig, a_n, _, dv = per_step_coefficients(
                path, t_cur, t_next, _sigma_coefficients, x.dtype
            )
            xs = x / _x(a, x)
            d = (xs - model(x, t_cur)) / _x(sig, x)
            x_next = _x(a_n, x) * (xs + _x(dv, x) * d)
        else:
            xs, d = _direction(path, x, t_cur, model(x, t_cur), self.space)
            dv = _variable(path, t_next, self.space) - _variable(path, t_cur, self.space)
            x_next = _unscale(path, xs + _x(dv, x) * d, t_next, self.space)
        return advance(state, x_next, t_cur, t_next)


@register_solver("heun")
@register_solver("flow_heun", space="t")
class Heun(SolverBase):
    """Heun's second-order method (Karras et al. 2022, Algorithm 1, deterministic): an Euler step
    then the trapezoidal correction with the slope at the end point; 2 evaluations per step.
    ``final_euler=True`` takes a plain Euler step last (EDM does when sigma_next = 0)."""

    allows_paused_times = True
    nfe_per_step = 2

    def __init__(self, space: str = "sigma", final_euler: bool = False) -> None:
        _check_space(space)
        self.space, self.final_euler = space, final_euler
        self.needs_finite_log_snr = space == "sigma"

    def step(self, state, t_cur, t_next, model, *, i: int, n: int, noise: Noise) -> State:
        x, path = state.x, model.path
        if self.space == "sigma":  # the same update with the step's scalars tabulated
            a, sig, a_n, sig_n, dv = per_step_coefficients(
                path, t_cur, t_next, _sigma_coefficients, x.dtype
            )
            a_x, a_n_x, dv = _x(a, x), _x(a_n, x), _x(dv, x)
            xs = x / a_x
            d = (xs - model(x, t_cur)) / _x(sig, x)
            x_next = a_n_x * (xs + dv * d)
            if not (self.final_euler and i == n - 1):
                d_next = (x_next / a_n_x - model(x_next, t_next)) / _x(sig_n, x)
                x_next = a_n_x * (xs + dv * 0.5 * (d + d_next))
        else:
            xs, d = _direction(path, x, t_cur, model(x, t_cur), self.space)
            dv = _variable(path, t_next, self.space) - _variable(path, t_cur, self.space)
            x_next = _unscale(path, xs + _x(dv, x) * d, t_next, self.space)
            if not (self.final_euler and i == n - 1):
                _, d_next = _direction(path, x_next, t_next, model(x_next, t_next), self.space)
                xs_next = xs + _x(dv, x) * 0.5 * (d + d_next)
                x_next = _unscale(path, xs_next, t_next, self.space)
        return advance(state, x_next, t_cur, t_next)
