"""Guidance: classifier-free guidance (:class:`CFG`, from :mod:`polydiff.core.conditioning`),
gradient guidance with a pluggable step rule, and Feynman-Kac / SMC steering.

Guidance objects are hooks of :func:`polydiff.core.sample`: ``wrap(model, mu=None) -> model``
acts on the data prediction ``model(y, t)`` in the centered variable (see
:class:`polydiff.core.param.Denoiser`), ``before_step`` / ``after_step`` on the sample.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from polydiff.core.conditioning import CFG
from polydiff.core.utils import expand_like


def _take(x: Any, idx: Tensor) -> Any:
    """Rows ``idx`` of a tensor or of every field of a structured sample."""
    return {k: v[idx] for k, v in x.items()} if isinstance(x, dict) else x[idx]


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


class GradientGuidance:
    """Gradient guidance by a differentiable objective, with a pluggable step rule:

    - ``rule="score"`` (classifier guidance; DPS as a score correction): the score gets
      ``scale * grad_x objective(x0_hat(x_t), x_t, t)``. Since D = (x + sigma^2 score)/alpha,
      the guided data prediction is D + scale sigma^2/alpha grad (autograd through the
      denoiser). With an exact log-likelihood this is exact posterior sampling.
    - ``rule="dps"``: Diffusion Posterior Sampling (Chung et al. 2023, "Diffusion Posterior
      Sampling for General Noisy Inverse Problems", Algorithm 1): after the solver's step,
      ``x_next += scale * grad_{x_t} objective(x0_hat(x_t), x_t, t)``, the gradient taken through
      the network at the step's start; DPS's normalised step is the objective
      ``-||y - A x0_hat||`` (not squared). ``last_x0`` keeps the last (unhooked) x0_hat.
    - ``rule="value"``: Diffuser's guided sampling (Janner et al. 2022, "Planning with Diffusion
      for Flexible Behavior Synthesis", Sec. 3.2): before the step,
      ``x_t += scale * grad_x objective(x_t, t)`` of a value (or control objective) on the
      noisy sample itself, no network backward pass.

    ``objective`` returns one value per sample [B] (or a scalar); they are summed for the
    gradient. ``interval=(t_lo, t_hi)`` applies the guidance only for t in that interval
    (Diffuser's ``t_stopgrad`` is ``interval=(t_stop, 1)``), as a tensor mask.
    """

    RULES = ("score", "dps", "value")

    def __init__(
        self,
        objective: Callable[..., Tensor],
        scale: float = 1.0,
        *,
        rule: str = "score",
        interval: tuple[float, float] | None = None,
    ) -> None:
        if rule not in self.RULES:
            raise ValueError(f"gradient guidance rule must be one of {self.RULES}, got {rule!r}")
        self.objective, self.scale, self.rule, self.interval = (
            objective,
            float(scale),
            rule,
            interval,
        )
        self.last_x0: Tensor | None = None
        self._grad: Tensor | None = None
        if rule == "value":  # the other rules act through the prediction
            self.before_step = self._value_step
        if rule == "dps":
            self.after_step = self._dps_step

    def _gated(self, grad: Tensor, t: Tensor) -> Tensor:
        inside = _in_interval(t, self.interval)
        if inside is None:
            return grad
        return grad * expand_like(inside.to(grad.dtype), grad)

    def wrap(self, model: Any, mu: Tensor | None = None) -> Any:
        if self.rule == "value":
            return model
        path = model.path

        def guided(y: Tensor, t: Tensor) -> Tensor:
            with torch.enable_grad():
                y_ = y.detach().requires_grad_(True)
                D = model(y_, t)
                shift = 0 if mu is None else mu
                obj = self.objective(D + shift, y_ + shift, t)
                (grad,) = torch.autograd.grad(obj.sum(), y_)
            grad = self._gated(grad, t)
            if self.rule == "dps":
                self._grad, self.last_x0 = grad, (D + shift).detach()
                return D.detach()
            a, s = path.alpha(t), path.sigma(t)
            return D.detach() + expand_like(self.scale * s**2 / a, y) * grad

        return _Wrapped(guided, path)

    def _dps_step(self, info: Any) -> Tensor:
        grad, self._grad = self._grad, None
        return info.x_next if grad is None else info.x_next + self.scale * grad

    def _value_step(self, x: Tensor, t: Tensor, i: int, n: int, noise: Any) -> Tensor:
        with torch.enable_grad():
            x_ = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.objective(x_, t).sum(), x_)
        return x + self.scale * self._gated(grad, t)


def best_of(x: Tensor, scores: Tensor, candidates: int) -> Tensor:
    """Candidate ranking: rows of ``x`` come in consecutive groups of ``candidates`` samples
    for one condition (``repeat_interleave`` order); each group's row with the highest score
    is kept, ``[B * K, ...] -> [B, ...]`` (Diffuser and Trajectory Diffuser execute the best of a
    batch of plans by a learned value)."""
    if candidates < 1 or x.shape[0] % candidates or scores.shape != x.shape[:1]:
        raise ValueError(
            f"best_of: {x.shape[0]} rows and {tuple(scores.shape)} scores do not form groups "
            f"of {candidates} candidates"
        )
    groups = x.shape[0] // candidates
    best = scores.view(groups, candidates).argmax(-1)
    return x[best + candidates * torch.arange(groups, device=x.device)]


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

    def _potential(self, x0: Any) -> Tensor:
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
        model.prime(state.x, t_cur, _take(D, idx))
        return state, {"log_w": log_w, "prev": r[idx]}

    def finish(self, state, y, smc_state, *, mu=None, generator=None):
        r = self._potential(y if mu is None else y + mu)
        log_w = smc_state["log_w"] + r - smc_state["prev"]
        idx, _ = self._resample(log_w, generator, force=True)
        return state.index(idx), _take(y, idx)


__all__ = ["CFG", "SMC", "GradientGuidance", "best_of"]
