"""Guidance as wrappers of the data prediction, and Feynman-Kac / SMC steering.

A guidance object has ``wrap(model, mu=None) -> model`` where ``model(y, t)`` is the data
prediction in the centered variable (see :class:`polydiff.core.param.Denoiser`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from polydiff.core.param import Denoiser
from polydiff.core.utils import expand_like


class _Wrapped:
    def __init__(self, fn: Callable[[Tensor, Tensor], Tensor], path: Any) -> None:
        self.fn, self.path = fn, path

    def __call__(self, y: Tensor, t: Tensor) -> Tensor:
        return self.fn(y, t)


def _in_interval(t: Tensor, interval: tuple[float, float] | None) -> Tensor | None:
    if interval is None:
        return None
    lo, hi = interval
    return (t >= lo) & (t <= hi)


class CFG:
    """Classifier-free guidance (Ho & Salimans 2022, Eq. 6, with their 1 + w written as w):
    D = D_u + w (D_c - D_u), so w = 1 is the plain conditional model.

    The combination is the same in every parameterization (they are affine in the prediction at
    fixed (x, t)), so it is done on the data prediction. ``interval=(t_lo, t_hi)`` applies the
    guidance only for t in that interval and the plain conditional prediction (w = 1) elsewhere
    (Kynkäänniemi et al. 2024, "Applying Guidance in a Limited Interval Improves Sample and
    Distribution Quality in Diffusion Models"); the mask is a tensor op, no host sync.
    ``sample(cond_fn, ..., guidance=[CFG(uncond_fn, 3.0)])``.
    """

    def __init__(
        self,
        uncond_fn: Callable[[Tensor, Tensor], Tensor],
        scale: float,
        *,
        prediction: str = "eps",
        interval: tuple[float, float] | None = None,
    ) -> None:
        self.uncond_fn, self.scale, self.prediction = uncond_fn, float(scale), prediction
        self.interval = interval

    def wrap(self, model: Any, mu: Tensor | None = None) -> Any:
        uncond = Denoiser(self.uncond_fn, model.path, self.prediction, mu=mu)

        def guided(y: Tensor, t: Tensor) -> Tensor:
            D_c, D_u = model(y, t), uncond(y, t)
            w = torch.as_tensor(self.scale, dtype=torch.float64, device=y.device)
            inside = _in_interval(t, self.interval)
            if inside is not None:
                w = torch.where(inside, w, torch.ones_like(w))
            return D_u + expand_like(w, y) * (D_c - D_u)

        return _Wrapped(guided, model.path)


def cfg(cond_fn: Callable, uncond_fn: Callable, scale: float) -> Callable:
    """CFG on raw model outputs of any parameterization: u + w (c - u)."""

    def guided(x: Tensor, t: Tensor) -> Tensor:
        u = uncond_fn(x, t)
        return u + scale * (cond_fn(x, t) - u)

    return guided


class GradientGuidance:
    """Gradient guidance of a differentiable objective, as in DPS (Chung et al. 2023, "Diffusion
    Posterior Sampling for General Noisy Inverse Problems", Algorithm 1): the score gets
    ``scale * grad_x objective(x0_hat(x_t), x_t, t)`` where ``objective`` is a per-sample
    log-likelihood (or reward) [B]. Since D = (x + sigma^2 score)/alpha, the guided data
    prediction is D + scale sigma^2/alpha grad (autograd through the denoiser)."""

    def __init__(self, objective: Callable[[Tensor, Tensor, Tensor], Tensor], scale: float = 1.0):
        self.objective, self.scale = objective, float(scale)

    def wrap(self, model: Any, mu: Tensor | None = None) -> Any:
        path = model.path

        def guided(y: Tensor, t: Tensor) -> Tensor:
            with torch.enable_grad():
                y_ = y.detach().requires_grad_(True)
                D = model(y_, t)
                shift = 0 if mu is None else mu
                obj = self.objective(D + shift, y_ + shift, t)
                (grad,) = torch.autograd.grad(obj.sum(), y_)
            a, s = path.alpha(t), path.sigma(t)
            return D.detach() + expand_like(self.scale * s**2 / a, y) * grad

        return _Wrapped(guided, path)


class SMC:
    """Feynman-Kac steering by sequential Monte Carlo (Singhal et al. 2025, "A General Framework
    for Inference-time Scaling and Steering of Diffusion Models", "difference" potential):
    the target is p(x0) exp(scale r(x0)). At step i the weight is multiplied by
    G_i = exp(scale (r(D_i) - r(D_{i-1}))), with D_i the data prediction at the current particles,
    so the potentials telescope to exp(scale r(x0)); the last factor uses the final sample.

    Particles are resampled (systematic resampling) within groups of ``num_particles`` rows
    (default: the whole batch) when the effective sample size drops below
    ``ess_threshold * num_particles``; the decision is a tensor mask (no host sync). Resampling
    reindexes the whole solver state, so multistep histories stay with their particles. The final
    sample is always resampled, so returned rows are equally weighted. Use a stochastic solver:
    with an ODE, duplicated particles stay identical.
    """

    def __init__(
        self,
        reward: Callable[[Tensor], Tensor],
        scale: float = 1.0,
        *,
        num_particles: int | None = None,
        ess_threshold: float = 0.5,
    ) -> None:
        if not 0 <= ess_threshold <= 1:
            raise ValueError(f"ess_threshold must be in [0, 1], got {ess_threshold}")
        self.reward, self.scale = reward, float(scale)
        self.num_particles, self.ess_threshold = num_particles, float(ess_threshold)

    def init(self, batch: int, device) -> dict[str, Tensor]:
        P = self.num_particles or batch
        if batch % P:
            raise ValueError(f"batch {batch} is not a multiple of num_particles {P}")
        zeros = torch.zeros(batch, dtype=torch.float64, device=device)
        return {"log_w": zeros, "prev": zeros.clone()}

    def _potential(self, x0: Tensor) -> Tensor:
        return self.scale * self.reward(x0).to(torch.float64)

    def _resample(self, log_w: Tensor, generator, force: bool) -> tuple[Tensor, Tensor]:
        B = log_w.shape[0]
        P = self.num_particles or B
        lw = log_w.view(-1, P)
        w = torch.softmax(lw, dim=-1)
        u = torch.rand(lw.shape[0], 1, generator=generator, dtype=w.dtype, device=w.device)
        u = (u + torch.arange(P, device=w.device, dtype=w.dtype)) / P
        cdf = torch.cumsum(w, dim=-1)
        picked = torch.searchsorted(cdf, u).clamp_max(P - 1)
        keep = torch.arange(P, device=w.device).expand_as(picked)
        if force:
            resample = torch.ones(lw.shape[0], 1, dtype=torch.bool, device=w.device)
        else:
            ess = 1.0 / (w**2).sum(-1, keepdim=True)
            resample = ess < self.ess_threshold * P
        local = torch.where(resample, picked, keep)
        idx = (local + P * torch.arange(lw.shape[0], device=w.device)[:, None]).reshape(B)
        new_lw = torch.where(resample, torch.zeros_like(lw), lw).reshape(B)
        return idx, torch.where(resample.expand_as(lw).reshape(B), new_lw, log_w[idx])

    def step(self, state, t_cur, model, smc_state, *, mu=None, generator=None):
        D = model(state.x, t_cur)
        r = self._potential(D if mu is None else D + mu)
        log_w = smc_state["log_w"] + r - smc_state["prev"]
        idx, log_w = self._resample(log_w, generator, force=False)
        state = state.index(idx)
        model.prime(state.x, t_cur, D[idx])
        return state, {"log_w": log_w, "prev": r[idx]}

    def finish(self, state, y, smc_state, *, mu=None, generator=None):
        r = self._potential(y if mu is None else y + mu)
        log_w = smc_state["log_w"] + r - smc_state["prev"]
        idx, _ = self._resample(log_w, generator, force=True)
        return state.index(idx), y[idx]


__all__ = ["CFG", "SMC", "GradientGuidance", "cfg"]
