"""Stochastic samplers of the reverse SDE dx = [f x - g^2 score] dt + g dw (Anderson 1982;
Song et al. 2021, Eq. 6), for affine paths (centered variable on mean-reverting paths).

A position whose per-sample / per-position time does not move over a step is held exactly: no
noise, no Langevin move, no history pushed (see ``polydiff.core.solvers.ode``)."""

from __future__ import annotations

import torch
from torch import Tensor

from polydiff.core.solvers import ode
from polydiff.core.solvers.base import (
    Noise,
    SolverBase,
    State,
    advance,
    paused_mask,
    register_solver,
)
from polydiff.core.utils import expand_like


def _score(path, x: Tensor, t: Tensor, D: Tensor) -> Tensor:
    a, s = expand_like(path.alpha(t), x), expand_like(path.sigma(t), x)
    return -(x - a * D) / s**2


def _reverse_sde_step(path, x, t_cur, t_next, score, z, add_noise: bool) -> Tensor:
    """One Euler-Maruyama step of the reverse SDE from t_cur to t_next < t_cur."""
    dt = t_next - t_cur  # negative
    f, g2 = path.drift(t_cur), path.diffusion2(t_cur)
    x_mean = x + expand_like(dt, x) * (expand_like(f, x) * x - expand_like(g2, x) * score)
    if not add_noise:
        return x_mean
    return x_mean + expand_like(torch.sqrt(g2 * -dt), x) * z


@register_solver("euler_maruyama")
class EulerMaruyama(SolverBase):
    """Euler-Maruyama on the reverse SDE (Song et al. 2021, "reverse diffusion" predictor; SGMSE's
    reverse-diffusion predictor is the same step). ``noise_final=False`` returns the mean of the
    last step (the "denoise" of Song et al.)."""

    stochastic = True
    allows_paused_times = True

    def __init__(self, noise_final: bool = True) -> None:
        self.noise_final = noise_final

    def step(self, state, t_cur, t_next, model, *, i: int, n: int, noise: Noise) -> State:
        x, path = state.x, model.path
        score = _score(path, x, t_cur, model(x, t_cur))
        add = self.noise_final or i < n - 1
        z = noise(x) if add else None
        x_next = _reverse_sde_step(path, x, t_cur, t_next, score, z, add)
        return advance(state, x_next, t_cur, t_next)


@register_solver("sde_dpmpp_2m", order=2)
@register_solver("sde_dpmpp_1", order=1)
class SDEDPMSolverPPMultistep(SolverBase):
    """SDE-DPM-Solver++ (Lu et al. 2022, "DPM-Solver++", the SDE variant): the
    reverse SDE in data prediction integrated exactly in its linear part,

        x_n = sigma_n/sigma e^{-h} x + alpha_n (1 - e^{-2h}) D_0
              + alpha_n (1 + (e^{-2h} - 1)/(2h)) (D_0 - D_1)/r0 + sigma_n sqrt(1 - e^{-2h}) z,

    where the third term integrates the linear (Taylor) model of D exactly:
    int_0^h 2 e^{-2(h-u)} u du = h - (1 - e^{-2h})/2. Order 1 drops it."""

    stochastic = True
    allows_paused_times = True

    def __init__(self, order: int = 2, *, lower_order_final: bool | None = None) -> None:
        ode._check_choices("SDE-DPM-Solver++", order=(order, (1, 2)))
        self.order, self.lower_order_final = order, lower_order_final

    def init(self, x: Tensor, t: Tensor) -> ode.MultistepState:
        return ode.MultistepState(x=x, **ode._empty_history(x, t, self.order - 1))

    def step(self, state, t_cur, t_next, model, *, i: int, n: int, noise: Noise) -> State:
        x, path = state.x, model.path
        lam, lam_n = ode._lam(path, t_cur), ode._lam(path, t_next)
        h = lam_n - lam
        em2 = torch.expm1(-2 * h)  # e^{-2h} - 1
        a_n, s_n = path.alpha(t_next), path.sigma(t_next)
        D0 = model(x, t_cur)
        x_next = (
            expand_like(s_n / path.sigma(t_cur) * torch.exp(-h), x) * x
            + expand_like(a_n * -em2, x) * D0
            + expand_like(s_n * torch.sqrt(-em2), x) * noise(x)
        )
        paused = paused_mask(t_cur, t_next)
        if paused is not None:
            h = ode._nonzero(h)  # a divisor below; paused positions are held anyway

        def update(q: int, n_hist: Tensor | None) -> Tensor:
            if q == 1:
                return x_next
            r0 = ode._valid_ratio((lam - state.lam_hist[0]) / h, n_hist, 1, 1.0)
            D1 = (D0 - state.D_hist[0]) / expand_like(r0, x)
            return x_next + expand_like(a_n * (1 + em2 / (2 * h)), x) * D1

        p = ode._order(self.order, i, n, self.lower_order_final)
        x_next = ode._per_order(state, paused, p, update)
        if self.order == 1:
            return state.replace(x=x_next)
        return state.replace(x=x_next, **ode._push(state, paused, 1, D_hist=D0, lam_hist=lam))


@register_solver("pc_langevin")
class PCLangevin(SolverBase):
    """Predictor-corrector sampling (Song et al. 2021, Algorithm 2/3) as configured by SGMSE
    (Richter et al. 2023): per step ``corrector_steps`` annealed Langevin moves
    x <- x + e score + sqrt(2 e) z with e = 2 (snr sigma(t))^2 (SGMSE's "ald" corrector,
    snr = 0.5), then one reverse-diffusion (Euler-Maruyama) predictor step. As in SGMSE the last
    predictor step returns its mean (``noise_final=False``)."""

    stochastic = True
    allows_paused_times = True

    def __init__(self, snr: float = 0.5, corrector_steps: int = 1, noise_final: bool = False):
        if snr <= 0 or corrector_steps < 0:
            raise ValueError(f"need snr > 0 and corrector_steps >= 0, got {snr}, {corrector_steps}")
        self.snr, self.corrector_steps, self.noise_final = float(snr), corrector_steps, noise_final
        self.nfe_per_step = 1 + corrector_steps

    def step(self, state, t_cur, t_next, model, *, i: int, n: int, noise: Noise) -> State:
        x, path = state.x, model.path
        step_size = expand_like(2 * (self.snr * path.sigma(t_cur)) ** 2, x)
        for _ in range(self.corrector_steps):
            score = _score(path, x, t_cur, model(x, t_cur))
            x = x + step_size * score + torch.sqrt(2 * step_size) * noise(x)
        score = _score(path, x, t_cur, model(x, t_cur))
        add = self.noise_final or i < n - 1
        z = noise(x) if add else None
        x_next = _reverse_sde_step(path, x, t_cur, t_next, score, z, add)
        # a paused position gets neither the Langevin moves nor the predictor step
        return advance(state, x_next, t_cur, t_next)
