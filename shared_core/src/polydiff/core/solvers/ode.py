"""Probability-flow ODE solvers on affine paths, all driven by the data prediction D = E[x0 | x_t].

Notation as in Lu et al. 2022 ("DPM-Solver++: Fast Solver for Guided Sampling of Diffusion
Probabilistic Models"): lambda = log(alpha/sigma), h = lambda_next - lambda > 0, and the exact
solution of the data-prediction ODE (variation of constants)

    x_t = sigma_t/sigma_s x_s + alpha_t int_0^h e^{-(h-u)} D(lambda_s + u) du.

Expanding D in Taylor series gives the phi functions (h phi_{k+1} = (1/k! - phi_k)),
    h phi_1 = 1 - e^{-h},  h phi_2 = (h - 1 + e^{-h})/h,  h phi_3 = (h^2/2 - h + 1 - e^{-h})/h^2,
so that x_t = sigma_t/sigma_s x_s + alpha_t (h phi_1 D + h phi_2 (h D') + h phi_3 (h^2 D'') + ...).
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor

from polydiff.core.param import from_x0
from polydiff.core.solvers.base import (
    Noise,
    SolverBase,
    State,
    expand_like,
    per_step_coefficients,
    register_solver,
)

LAMBDA_CLAMP = 50.0  # keeps h finite when a grid touches alpha = 0 or sigma = 0


def _lam(path, t: Tensor) -> Tensor:
    return path.log_snr(t).clamp(-LAMBDA_CLAMP, LAMBDA_CLAMP)


def _phis(h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(h phi_1, h phi_2, h phi_3) for the data-prediction exponential integrator."""
    em = torch.expm1(-h)  # e^{-h} - 1
    return -em, (h + em) / h, (0.5 * h * h - h - em) / (h * h)


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


# ---------------------------------------------------------------------------------------------
@register_solver("ddim")
@register_solver("ddpm", eta=1.0)
class DDIM(SolverBase):
    """DDIM (Song et al. 2021, "Denoising Diffusion Implicit Models", Eq. 12), for any affine path:
    x_next = alpha_next D + sqrt(sigma_next^2 - c^2) eps_hat + c z with c = eta * std of
    q(x_next | x, D). eta = 0 is the deterministic DDIM (= DPM-Solver++ order 1); eta = 1 samples
    the posterior q(x_next | x_t, x0 = D), i.e. DDPM ancestral sampling (Ho et al. 2020, Eq. 6-7).
    """

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
        if self.eta == 0:
            return state.replace(x=x_next)
        return state.replace(x=x_next + _x(c, x) * noise(x))


# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class MultistepState(State):
    """x plus the previous data predictions D_{i-1}, D_{i-2}, ... and their lambdas."""

    D_hist: tuple[Tensor, ...] = ()
    lam_hist: tuple[Tensor, ...] = ()


def _empty_history(x: Tensor, t: Tensor, k: int) -> dict:
    return {
        "D_hist": tuple(torch.zeros_like(x) for _ in range(k)),
        "lam_hist": tuple(torch.zeros_like(t, dtype=torch.float64) for _ in range(k)),
    }


def _dpmpp_coefficients(path, t: Tensor, t_next: Tensor) -> tuple[Tensor, ...]:
    """(lambda, h, sigma_n/sigma, alpha_n h phi_1, alpha_n h phi_2, alpha_n h phi_3) of a
    DPM-Solver++ step, elementwise in time."""
    lam, lam_n = _lam(path, t), _lam(path, t_next)
    h = lam_n - lam
    hphi1, hphi2, hphi3 = _phis(h)
    a_n = path.alpha(t_next)
    return lam, h, path.sigma(t_next) / path.sigma(t), a_n * hphi1, a_n * hphi2, a_n * hphi3


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

    def __init__(
        self,
        order: int = 2,
        *,
        variant: str = "taylor",
        solver_type: str | None = None,
        lower_order_final: bool | None = True,
    ) -> None:
        if order not in (1, 2, 3):
            raise ValueError(f"DPM-Solver++ multistep order must be 1, 2 or 3, got {order}")
        if variant not in ("taylor", "shipped"):
            raise ValueError(f"variant must be 'taylor' or 'shipped', got {variant!r}")
        if solver_type is None:
            solver_type = "taylor" if order == 3 and variant == "taylor" else "midpoint"
        if solver_type not in ("midpoint", "taylor"):
            raise ValueError(f"solver_type must be 'midpoint' or 'taylor', got {solver_type!r}")
        self.order, self.variant, self.solver_type = order, variant, solver_type
        self.lower_order_final = lower_order_final

    def init(self, x: Tensor, t: Tensor) -> MultistepState:
        return MultistepState(x=x, **_empty_history(x, t, self.order - 1))

    def step(self, state, t_cur, t_next, model, *, i: int, n: int, noise: Noise) -> State:
        x = state.x
        lam, h, s_ratio, c1, c2, c3 = per_step_coefficients(
            model.path, t_cur, t_next, _dpmpp_coefficients
        )
        D0 = model(x, t_cur)
        p = _order(self.order, i, n, self.lower_order_final)
        x_next = _x(s_ratio, x) * x
        if p == 1:
            x_next = x_next + _x(c1, x) * D0
        elif p == 2:
            r0 = (lam - state.lam_hist[0]) / h
            D1 = (D0 - state.D_hist[0]) / _x(r0, x)
            if self.solver_type == "midpoint":
                x_next = x_next + _x(c1, x) * (D0 + 0.5 * D1)
            else:
                x_next = x_next + _x(c1, x) * D0 + _x(c2, x) * D1
        else:
            r0 = (lam - state.lam_hist[0]) / h
            r1 = (state.lam_hist[0] - state.lam_hist[1]) / h
            D1_0 = (D0 - state.D_hist[0]) / _x(r0, x)
            D1_1 = (state.D_hist[0] - state.D_hist[1]) / _x(r1, x)
            hD1 = D1_0 + _x(r0 / (r0 + r1), x) * (D1_0 - D1_1)
            k2 = 2.0 if self.variant == "taylor" else 1.0
            h2D2 = _x(k2 / (r0 + r1), x) * (D1_0 - D1_1)
            x_next = x_next + _x(c1, x) * D0 + _x(c2, x) * hD1 + _x(c3, x) * h2D2
        k = self.order - 1
        return state.replace(
            x=x_next,
            D_hist=((D0, *state.D_hist[:-1]) if k else ()),
            lam_hist=((lam, *state.lam_hist[:-1]) if k else ()),
        )


# ---------------------------------------------------------------------------------------------
@register_solver("dpmpp_2s", order=2)
@register_solver("dpmpp_3s", order=3)
class DPMSolverPPSinglestep(SolverBase):
    """Singlestep DPM-Solver++ (Lu et al. 2022): order 2 is DPM-Solver++(2S), Algorithm 1, with an
    intermediate point at lambda + r1 h (r1 = 1/2); order 3 evaluates at r1 = 1/3, r2 = 2/3 and
    uses the Taylor form h phi_2 h D' + h phi_3 h^2 D'' (DPM-Solver-3's "taylor" variant, Lu et
    al. 2022a, carried to data prediction). ``nfe_per_step = order``."""

    def __init__(self, order: int = 2) -> None:
        if order not in (1, 2, 3):
            raise ValueError(f"DPM-Solver++ singlestep order must be 1, 2 or 3, got {order}")
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
            return state.replace(x=x_next + _x(a_n * hphi1, x) * D0)
        if self.order == 2:
            r1 = 0.5
            u, t_u = self._sub(path, x, D0, lam, r1 * h, sigma)
            D = (1 - 1 / (2 * r1)) * D0 + 1 / (2 * r1) * model(u, t_u)
            return state.replace(x=x_next + _x(a_n * hphi1, x) * D)
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
        return state.replace(x=x_next)


# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class UniPCState(MultistepState):
    """Adds x at the previous time (after correction), which the corrector restarts from."""

    x_prev: Tensor | None = None
    t_prev: Tensor | None = None


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

    def __init__(
        self,
        order: int = 2,
        *,
        variant: str = "bh2",
        corrector: bool = True,
        lower_order_final: bool | None = True,
    ) -> None:
        if order not in (1, 2, 3):
            raise ValueError(f"UniPC order must be 1, 2 or 3, got {order}")
        if variant not in ("bh1", "bh2"):
            raise ValueError(f"UniPC variant must be 'bh1' or 'bh2', got {variant!r}")
        self.order, self.variant, self.corrector = order, variant, corrector
        self.lower_order_final = lower_order_final

    def init(self, x: Tensor, t: Tensor) -> UniPCState:
        return UniPCState(
            x=x, x_prev=torch.zeros_like(x), t_prev=t, **_empty_history(x, t, self.order)
        )

    def coefficients(self, path, t: Tensor, t_next: Tensor) -> tuple[Tensor, ...]:
        """(lambda, h, sigma_n/sigma, alpha_n h phi_1, alpha_n B(h)), elementwise in time."""
        lam, lam_n = _lam(path, t), _lam(path, t_next)
        h = lam_n - lam
        hphi1 = -torch.expm1(-h)
        B = h if self.variant == "bh1" else hphi1
        a_n = path.alpha(t_next)
        return lam, h, path.sigma(t_next) / path.sigma(t), a_n * hphi1, a_n * B

    def _update(self, x, D0, coef, past, new=None):
        """x at lambda_n from (x, D0 at lambda) and past (D, lambda) pairs (+ corrector point);
        ``coef`` are the step's scalars from :meth:`coefficients`."""
        lam, h, s_ratio, c1, cB = coef
        out = _x(s_ratio, x) * x + _x(c1, x) * D0
        rks = [(lam_k - lam) / h for _, lam_k in past]
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
        lam = coef[0]
        D0 = model(state.x, t_cur)
        x = state.x
        hist = list(zip(state.D_hist, state.lam_hist))
        if self.corrector and i > 0:
            # redo the previous step (from t_prev, order p_c) with D0 as an extra node at r = 1
            p_c = _order(self.order, i - 1, n, self.lower_order_final)
            coef_prev = per_step_coefficients(path, state.t_prev, t_cur, self.coefficients)
            x = self._update(state.x_prev, hist[0][0], coef_prev, hist[1:p_c], D0)
        p = _order(self.order, i, n, self.lower_order_final)
        x_next = self._update(x, D0, coef, hist[: p - 1])
        return state.replace(
            x=x_next,
            x_prev=x,
            t_prev=t_cur,
            D_hist=(D0, *state.D_hist[:-1]),
            lam_hist=(lam, *state.lam_hist[:-1]),
        )


# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class DEISState(State):
    eps_hist: tuple[Tensor, ...] = ()
    rho_hist: tuple[Tensor, ...] = ()


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

    needs_finite_log_snr = True  # rho = sigma/alpha must be finite

    def __init__(self, order: int = 3, *, lower_order_final: bool | None = None) -> None:
        if order not in (1, 2, 3):
            raise ValueError(f"DEIS order must be 1, 2 or 3, got {order}")
        self.order, self.lower_order_final = order, lower_order_final

    def init(self, x: Tensor, t: Tensor) -> DEISState:
        k = self.order - 1
        return DEISState(
            x=x,
            eps_hist=tuple(torch.zeros_like(x) for _ in range(k)),
            rho_hist=tuple(torch.zeros_like(t, dtype=torch.float64) for _ in range(k)),
        )

    def step(self, state, t_cur, t_next, model, *, i: int, n: int, noise: Noise) -> State:
        x, path = state.x, model.path
        a, s = path.alpha(t_cur), path.sigma(t_cur)
        a_n, s_n = path.alpha(t_next), path.sigma(t_next)
        rho, rho_n = s / a, s_n / a_n
        eps = (x - _x(a, x) * model(x, t_cur)) / _x(s, x)
        p = _order(self.order, i, n, self.lower_order_final)
        eps_all = [eps, *state.eps_hist[: p - 1]]
        nodes = [torch.zeros_like(rho)] + [r - rho for r in state.rho_hist[: p - 1]]
        weights = _lagrange_weights(nodes, rho_n - rho)
        x_tilde = x / _x(a, x) + sum(_x(w, x) * e for w, e in zip(weights, eps_all))
        k = self.order - 1
        return state.replace(
            x=_x(a_n, x) * x_tilde,
            eps_hist=((eps, *state.eps_hist[:-1]) if k else ()),
            rho_hist=((rho, *state.rho_hist[:-1]) if k else ()),
        )


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
            return state.replace(x=_x(a_n, x) * (xs + _x(dv, x) * d))
        xs, d = _direction(path, x, t_cur, model(x, t_cur), self.space)
        dv = _variable(path, t_next, self.space) - _variable(path, t_cur, self.space)
        return state.replace(x=_unscale(path, xs + _x(dv, x) * d, t_next, self.space))


@register_solver("heun")
@register_solver("flow_heun", space="t")
class Heun(SolverBase):
    """Heun's second-order method (Karras et al. 2022, Algorithm 1, deterministic): an Euler step
    then the trapezoidal correction with the slope at the end point; 2 evaluations per step.
    ``final_euler=True`` takes a plain Euler step last (EDM does when sigma_next = 0)."""

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
            if self.final_euler and i == n - 1:
                return state.replace(x=x_next)
            d_next = (x_next / a_n_x - model(x_next, t_next)) / _x(sig_n, x)
            return state.replace(x=a_n_x * (xs + dv * 0.5 * (d + d_next)))
        xs, d = _direction(path, x, t_cur, model(x, t_cur), self.space)
        dv = _variable(path, t_next, self.space) - _variable(path, t_cur, self.space)
        xs_next = xs + _x(dv, x) * d
        x_next = _unscale(path, xs_next, t_next, self.space)
        if self.final_euler and i == n - 1:
            return state.replace(x=x_next)
        _, d_next = _direction(path, x_next, t_next, model(x_next, t_next), self.space)
        xs_next = xs + _x(dv, x) * 0.5 * (d + d_next)
        return state.replace(x=_unscale(path, xs_next, t_next, self.space))
