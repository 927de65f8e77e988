"""Conditioning through the driver, and classifier-free guidance for every solver.

``sample(model_fn, x, cond=c, ...)`` calls ``model_fn(x, t, c)`` (``model_fn(x, t)`` when no
condition is given, so unconditional models keep their signature). Classifier-free guidance
(:class:`CFG`) wraps that call before the solver sees it, so it works the same for continuous
solvers (any parameterization), discrete solvers (x0 logits) and structured samples (a dict of
predictions, combined field by field).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from polydiff.core.utils import expand_like

__all__ = ["CFG", "bind_condition", "guided_log_probs"]

ModelFn = Callable[..., Any]


def bind_condition(model_fn: ModelFn, cond: Any) -> ModelFn:
    """``fn(x, t, *extra) = model_fn(x, t, *extra, cond)``; the model itself when ``cond`` is
    None (extra arguments: the circular Bayesian flow's concentration)."""
    if cond is None:
        return model_fn

    def conditioned(x: Any, t: Tensor, *extra: Tensor) -> Any:
        return model_fn(x, t, *extra, cond)

    return conditioned


def guided_log_probs(cond_logits: Tensor, uncond_logits: Tensor, w: Any) -> Tensor:
    """Classifier-free guidance of categorical x0 predictions in log-probability space,
    ``log p_w = log p_u + w (log p_c - log p_u)`` = p_c^w / p_u^(w - 1) before the sampler's
    softmax (SMDM: Nie et al. 2025, "Scaling up Masked Diffusion Models on Text", Eq. 9, whose
    scale is w - 1). w = 1 is the conditional model; classes the conditional rules out stay out."""
    log_c = torch.log_softmax(cond_logits.double(), -1)
    log_u = torch.log_softmax(uncond_logits.double(), -1)
    guided = log_u + w * (log_c - log_u)
    return torch.where(torch.isneginf(log_c), log_c, guided.nan_to_num(nan=float("-inf")))


def _combine(c: Tensor, u: Tensor, w: Any, kind: str) -> Tensor:
    if not isinstance(w, float):
        w = expand_like(w, c)  # per-sample [B] / per-position [B, L] weights line up with c
    if kind == "logits":
        return guided_log_probs(c, u, w)
    return u + w * (c - u)


class CFG:
    """Classifier-free guidance (Ho & Salimans 2022, "Classifier-Free Diffusion Guidance", Eq. 6
    with their 1 + w written as ``scale``): ``pred = u + scale (c - u)`` of the conditional and
    unconditional predictions, so ``scale = 1`` is the plain conditional model.

    The combination is linear in the raw prediction of a continuous model (the same in every
    parameterization: they are affine in it at a fixed (x, t)) and in log-probabilities for
    x0 logits (``prediction="logits"``, :func:`guided_log_probs`); structured samples combine
    field by field with each field's prediction kind.

    Where the unconditional prediction comes from (one of):
      - ``uncond``: the null condition, ``model_fn(x, t, uncond)`` (a model trained with
        condition dropout; the default None is passed as the condition);
      - ``uncond_fn``: a separate unconditional network ``uncond_fn(x, t)``;
      - ``drop``: ``drop(x) -> x'`` erases the condition from the sample itself: SMDM's
        unsupervised CFG masks the prompt tokens (Nie et al. 2025, Sec. 3), so a model never
        trained with dropout can be guided; combined with ``uncond`` if both are given.

    ``interval=(t_lo, t_hi)``: guidance only for t in that interval, the conditional model
    elsewhere (Kynkäänniemi et al. 2024, "Applying Guidance in a Limited Interval Improves Sample
    and Distribution Quality in Diffusion Models"); per-sample and per-position times give a
    per-row / per-position choice. Every choice is a tensor op (no host sync).

        sample(model_fn, x_T, path=path, cond=labels, guidance=[CFG(3.0, uncond=null_labels)])
    """

    def __init__(
        self,
        scale: float,
        *,
        uncond: Any = None,
        uncond_fn: ModelFn | None = None,
        drop: Callable[[Any], Any] | None = None,
        interval: tuple[float, float] | None = None,
    ) -> None:
        if uncond_fn is not None and (uncond is not None or drop is not None):
            raise ValueError("CFG: give uncond_fn alone, or uncond and/or drop")
        if interval is not None and not interval[0] <= interval[1]:
            raise ValueError(f"CFG interval must be (t_lo, t_hi) with t_lo <= t_hi, got {interval}")
        self.scale, self.uncond, self.uncond_fn, self.drop = float(scale), uncond, uncond_fn, drop
        self.interval = interval

    def _weight(self, t: Tensor) -> Any:
        if self.interval is None:
            return self.scale
        lo, hi = self.interval
        inside = (t >= lo) & (t <= hi)
        return torch.where(inside, torch.full_like(t, self.scale), torch.ones_like(t))

    def wrap_fn(self, model_fn: ModelFn, *, cond: Any, prediction: Any) -> ModelFn:
        """The guided ``fn(x, t, *extra)`` from the user's ``model_fn`` and the condition."""
        if self.uncond_fn is None and self.drop is None and cond is None:
            raise ValueError(
                "CFG needs something to guide by: sample(..., cond=...), or CFG(uncond_fn=...) "
                "or CFG(drop=...)"
            )
        conditional = bind_condition(model_fn, cond)
        if self.uncond_fn is not None:
            unconditional = self.uncond_fn
        else:
            unconditional = model_fn if cond is None else bind_condition(model_fn, self.uncond)
        drop = self.drop

        def guided(x: Any, t: Tensor, *extra: Tensor) -> Any:
            c = conditional(x, t, *extra)
            u = unconditional(x if drop is None else drop(x), t, *extra)
            w = self._weight(t)
            if isinstance(c, dict):
                kinds = prediction if isinstance(prediction, dict) else dict.fromkeys(c, prediction)
                return {k: _combine(c[k], u[k], w, kinds[k]) for k in c}
            return _combine(c, u, w, prediction)

        return guided
