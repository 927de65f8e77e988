"""Samplers for discrete diffusion as solvers on an integer token state.

Each solver follows the core solver protocol (``polydiff.core.solvers.base``) and is registered
by name, so ``polydiff.core.sample(model_fn, path.prior(shape), path=path, solver="mdlm",
prediction="logits", steps=n)`` runs it: ``model_fn(z, t)`` returns x0 logits [B, L, K], time runs
from 1 (prior) to 0 (data), the path reaches the step through ``wrap_model`` (``model.path``).
``noise`` is the driver's standard-normal source ``noise(like)`` (uniforms are Phi(z), Gumbels
-log(-log Phi(z)) computed with log_ndtr, so a seed or a user noise list fixes every draw), a
``torch.Generator`` or None. Categorical draws are float64 Gumbel-max (``sample_categorical``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from polydiff.core.discrete.paths import MaskedDiffusion, UniformDiffusion, per_position
from polydiff.core.solvers.base import SolverBase, State, register_solver

__all__ = [
    "DiscreteModel",
    "DiscreteState",
    "FirstHittingSampler",
    "MaskedAncestral",
    "MaskedConfidence",
    "ReMDMSampler",
    "UniformAncestral",
    "sample_categorical",
    "top_p_filter",
]

RandomSource = torch.Generator | Callable[[Tensor], Tensor] | None


def uniforms(shape, device, source: RandomSource = None, dtype=torch.float64) -> Tensor:
    """U(0, 1) draws (float64 arithmetic) from a generator, or Phi(z) of the driver's normals."""
    if source is None or isinstance(source, torch.Generator):
        return torch.rand(shape, generator=source, dtype=dtype, device=device).double()
    if callable(source):
        return torch.special.ndtr(source(torch.empty(shape, dtype=torch.float64, device=device)))
    raise TypeError(
        f"noise must be a torch.Generator, a noise(like) callable or None, got {type(source)}"
    )


def gumbels(shape, device, source: RandomSource = None, dtype=torch.float64) -> Tensor:
    """Standard Gumbel draws G = -log(-log U); from normals z, -log U = -log_ndtr(z) keeps the
    upper tail (z ~ 8 gives G ~ 35) instead of rounding Phi(z) to 1."""
    if source is not None and not isinstance(source, torch.Generator) and callable(source):
        z = source(torch.empty(shape, dtype=torch.float64, device=device))
        return -torch.log(-torch.special.log_ndtr(z))
    u = uniforms(shape, device, source, dtype)
    return -torch.log(-torch.log(u.clamp_min(torch.finfo(torch.float64).tiny)))


def sample_categorical(
    scores: Tensor,
    generator: RandomSource = None,
    *,
    probs: bool = False,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Draw one index along the last dim by Gumbel-max: argmax(log p + G), G = -log(-log U).

    ``scores`` are logits (default) or probabilities (``probs=True``); ``generator`` is a
    torch.Generator, the driver's noise callable or None. ``dtype`` is the precision of the
    uniforms U (the arithmetic is float64): float32 uniforms have 24-bit resolution, so G is capped
    near 16.6 and rare classes can never win against a dominant one (the mask in MDLM's
    posterior). The tail is truncated, the effective temperature drops and generative perplexity
    looks better than it is (Zheng et al. 2024, "Masked Diffusion Models are Secretly
    Time-Agnostic Masked Models and Exploit Inaccurate Categorical Sampling"). float64
    uniforms move the cap to ~36.7. Keep the default.
    """
    logits = torch.log(scores.double()) if probs else scores.double()
    return (logits + gumbels(scores.shape, scores.device, generator, dtype)).argmax(-1)


def top_p_filter(logits: Tensor, top_p: float) -> Tensor:
    """Nucleus filtering (Holtzman et al. 2020): keep the smallest set of most likely classes whose
    mass reaches top_p; the others get logit -inf."""
    if top_p >= 1.0:
        return logits
    sorted_logits, order = logits.sort(-1, descending=True)
    p = torch.softmax(sorted_logits, -1)
    drop_sorted = (p.cumsum(-1) - p) >= top_p  # mass before this class already reaches top_p
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


@dataclass(frozen=True)
class DiscreteState(State):
    """Batch-leading sampler state; ``index(idx)`` reindexes every field (particles / SMC)."""

    t: Tensor  # [B, L] current time of each position (float64)
    x0_probs: Tensor  # [B, L, K] last tempered x0 prediction (reused by caching); K = 0 before
    x_seen: Tensor  # [B, L] tokens at which x0_probs was computed (-1 before any call)
    nfe: Tensor  # [B] long: model evaluations spent on each row
    x0_draw: Tensor  # [B, L] candidate tokens drawn from x0_probs (cached masked ancestral; -1)


class DiscreteModel:
    """``model_fn(z, t) -> x0 logits [B, L, K]`` carrying its discrete path (``model.path``)."""

    def __init__(self, model_fn: Callable[[Tensor, Tensor], Tensor], path: Any) -> None:
        self.model_fn, self.path = model_fn, path

    def __call__(self, z: Tensor, t: Tensor) -> Tensor:
        return self.model_fn(z, t)


class _DiscreteSolver(SolverBase):
    """Shared parts: state creation, the x0 prediction with temperature / top-p, caching.

    ``path`` may be given here or reach ``step`` as ``model.path`` (the driver's ``wrap_model``).
    """

    nfe_per_step = 1
    stochastic = True
    path_type: type = MaskedDiffusion

    def __init__(
        self,
        path: MaskedDiffusion | UniformDiffusion | None = None,
        *,
        temperature: float = 1.0,
        top_p: float = 1.0,
        cache: bool = False,
    ) -> None:
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        self.path, self.temperature, self.top_p, self.cache = path, temperature, top_p, cache

    def wrap_model(self, model_fn, path, prediction: str, *, mu: Tensor | None = None):
        if prediction not in ("logits", "x0"):
            raise ValueError(
                f"{type(self).__name__}: the model must return x0 logits; pass "
                f"prediction='logits' (got {prediction!r})"
            )
        if mu is not None:
            raise ValueError("discrete solvers take no mean-reverting condition mu")
        return DiscreteModel(model_fn, path)

    def init(self, x: Tensor, t: Tensor | float = 1.0) -> DiscreteState:
        if x.is_floating_point():  # the driver hands tokens over in its float work dtype
            if not torch.equal(x, x.round()):  # once, before the loop
                raise ValueError("discrete solvers need integer tokens, got non-integer values")
        elif x.dtype not in (torch.long, torch.int32, torch.int16, torch.uint8):
            raise ValueError(f"discrete solvers need integer tokens, got dtype {x.dtype}")
        x = x.long()
        B = x.shape[0]
        return DiscreteState(
            x=x,
            t=per_position(t, x).clone(),
            x0_probs=torch.zeros(*x.shape, 0, dtype=torch.float64, device=x.device),
            x_seen=torch.full_like(x, -1),
            nfe=torch.zeros(B, dtype=torch.long, device=x.device),
            x0_draw=torch.full_like(x, -1),
        )

    def _prepare_logits(self, path, logits: Tensor, z: Tensor, t: Tensor) -> Tensor:
        if isinstance(path, MaskedDiffusion) and path.mask_index < path.num_classes:
            return logits.double().index_fill(  # SUBS: never predict the mask
                -1, torch.tensor([path.mask_index], device=z.device), float("-inf")
            )
        return logits.double()

    def _x0_probs(self, path, logits: Tensor, z: Tensor, t: Tensor) -> Tensor:
        """Temperature and top-p act on x_theta, never on the posterior (text.md pitfalls)."""
        path._check_logits(logits, z)
        logits = self._prepare_logits(path, logits, z, t)
        if self.temperature == 0:  # greedy: _draw_x0 takes the argmax
            return torch.softmax(logits, -1)
        return torch.softmax(top_p_filter(logits / self.temperature, self.top_p), -1)

    def _draw_x0(self, probs: Tensor, source: RandomSource) -> Tensor:
        """x0 ~ x_theta (float64 Gumbel), or its argmax at temperature 0. The noise is drawn even
        when greedy so that every configuration consumes the same random stream."""
        tokens = sample_categorical(probs, source, probs=True)
        return probs.argmax(-1) if self.temperature == 0 else tokens

    def _predict(
        self, path, state: DiscreteState, model, t: Tensor
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """(x_theta at the current tokens, nfe, rows refreshed or None if uncached).

        With ``cache=True`` (only valid for a model that ignores t, as MDLM/BD3LM train) rows
        whose tokens did not change since the last call reuse the stored prediction (MDLM's
        caching), so each row costs at most L + 1 calls. Finding the stale rows is one host sync
        per step; ``cache=False`` is sync-free."""
        t_model = t if t.dim() else t.expand(state.x.shape[0])
        if not self.cache:
            probs = self._x0_probs(path, model(state.x, t_model), state.x, t)
            return probs, state.nfe + 1, None
        # comparing with the tokens actually seen also catches edits by x_t hooks (inpainting)
        stale = (state.x != state.x_seen).any(-1).nonzero(as_tuple=True)[0]
        probs, nfe = state.x0_probs, state.nfe
        if probs.shape[-1] == 0:
            probs = torch.zeros(
                *state.x.shape, path.num_classes, dtype=torch.float64, device=state.x.device
            )
        if stale.numel() > 0:
            z = state.x[stale]
            t_stale = per_position(t, state.x)[stale]
            fresh = self._x0_probs(path, model(z, t_model[stale]), z, t_stale)
            probs = probs.index_copy(0, stale, fresh)
            nfe = nfe.index_add(0, stale, torch.ones_like(stale))
        return probs, nfe, stale

    def _next_state(
        self,
        state: DiscreteState,
        x: Tensor,
        t_next: Tensor,
        probs: Tensor,
        nfe: Tensor,
        x0_draw: Tensor | None = None,
    ) -> DiscreteState:
        return DiscreteState(
            x=x,
            t=per_position(t_next, x).clone(),
            x0_probs=probs,
            x_seen=state.x,
            nfe=nfe,
            x0_draw=state.x0_draw if x0_draw is None else x0_draw,
        )


@register_solver("mdlm")
@register_solver("mdlm_cached", cache=True)
class MaskedAncestral(_DiscreteSolver):
    """MDLM ancestral sampler (Sahoo et al. 2024): each masked position is
    revealed with probability (alpha_s - alpha_t)/(1 - alpha_t), its token drawn from x_theta;
    revealed tokens are kept. Optional no-update caching (``cache=True``, "mdlm_cached"): then
    the candidate token of each position is also drawn only when its row's prediction is
    refreshed (at most L + 1 times per row, instead of at every step). That is exact: a masked
    position's reveal coin is independent of its candidate, which stays a fresh draw from the
    unchanged x_theta until used. The samples are equal in law to the uncached sampler's, not bit
    for bit (it draws every step).
    A position whose time does not change over a step is never revealed (probability 0), so
    per-position grids may pause positions (block-wise decoding)."""

    allows_paused_times = True

    def step(self, state, t_cur, t_next, model, *, i: int, n: int, noise=None) -> DiscreteState:
        path, x = self._path(model), state.x
        t_cur = torch.as_tensor(t_cur, dtype=torch.float64, device=x.device)
        a_t, a_s = path.alpha(per_position(t_cur, x)), path.alpha(per_position(t_next, x))
        probs, nfe, stale = self._predict(path, state, model, t_cur)
        u = uniforms(x.shape, x.device, noise)
        if stale is None:
            tokens = self._draw_x0(probs, noise)
        else:  # redraw the candidates of refreshed rows only (see the class docstring)
            tokens = state.x0_draw
            if stale.numel() > 0:
                tokens = tokens.index_copy(0, stale, self._draw_x0(probs[stale], noise))
        reveal = (x == path.mask_index) & (u < (a_s - a_t) / (1 - a_t).clamp_min(1e-12))
        x_new = torch.where(reveal, tokens, x)
        return self._next_state(state, x_new, t_next, probs, nfe, tokens)


@register_solver("remdm")
@register_solver("remdm_loop", strategy="loop")
class ReMDMSampler(_DiscreteSolver):
    """ReMDM remasking sampler (Wang et al. 2025, "Remasking Discrete Diffusion Models with
    Inference-Time Scaling"). Unmasked tokens are remasked with probability sigma_t;
    masked ones are revealed with probability (alpha_s - (1 - sigma_t) alpha_t)/(1 - alpha_t).
    sigma_max = min(1, (1 - alpha_s)/alpha_t); ``strategy="cap"``: sigma = min(eta, sigma_max),
    ``"rescale"``: sigma = eta sigma_max. eta = 0 is the MDLM ancestral sampler.

    ``strategy="loop"`` ("remdm_loop", the paper's Sec. 4 / OWT setup): ancestral MDLM from t = 1
    to t_on with the schedule compressed so that alpha(t_on) = alpha_on; then, for t in
    [t_off, t_on], alpha is held at alpha_on and tokens are remasked with sigma = min(eta,
    sigma_max) (a corrector loop whose stationary masked fraction is 1 - alpha_on); then ancestral
    MDLM from alpha_on to 1. A time-conditioned model sees the time whose alpha is the effective
    one. Put t_on and t_off on the grid (a uniform grid of many steps does) so no step straddles a
    phase boundary; a straddling step is taken without remasking.
    """

    def __init__(
        self,
        path=None,
        *,
        eta: float = 0.02,
        strategy: str = "cap",
        t_on: float = 0.55,
        t_off: float = 0.05,
        alpha_on: float = 0.9,
        **kw,
    ) -> None:
        super().__init__(path, **kw)
        if strategy not in ("cap", "rescale", "loop"):
            raise ValueError(f"strategy must be 'cap', 'rescale' or 'loop', got {strategy!r}")
        if not 0 <= eta <= 1:
            raise ValueError(f"eta must be in [0, 1], got {eta}")
        if strategy == "loop" and not (0 < t_off < t_on < 1 and 0 < alpha_on < 1):
            raise ValueError(
                f"the loop needs 0 < t_off < t_on < 1 and 0 < alpha_on < 1, got t_off={t_off}, "
                f"t_on={t_on}, alpha_on={alpha_on}"
            )
        self.eta, self.strategy = eta, strategy
        self.t_on, self.t_off, self.alpha_on = t_on, t_off, alpha_on

    def _loop_alpha(self, path, t: Tensor) -> Tensor:
        """The loop's effective alpha: the path's schedule squeezed into [t_on, 1] (alpha_on ->
        alpha(1)) and into [0, t_off] (1 -> alpha_on), constant alpha_on in between."""
        a_on = self.alpha_on
        early = a_on * path.alpha(((t - self.t_on) / (1 - self.t_on)).clamp(0, 1))
        late = 1 - (1 - a_on) * (1 - path.alpha((t / self.t_off).clamp(0, 1)))
        return torch.where(t >= self.t_on, early, torch.where(t <= self.t_off, late, a_on))

    def step(self, state, t_cur, t_next, model, *, i: int, n: int, noise=None) -> DiscreteState:
        path, x = self._path(model), state.x
        t_cur = torch.as_tensor(t_cur, dtype=torch.float64, device=x.device)
        t_c, t_n = per_position(t_cur, x), per_position(t_next, x)
        t_model = t_cur
        if self.strategy == "loop":
            a_t, a_s = self._loop_alpha(path, t_c), self._loop_alpha(path, t_n)
            in_loop = (t_c <= self.t_on) & (t_n >= self.t_off)
            sigma = torch.where(in_loop, ((1 - a_s) / a_t).clamp(max=self.eta), 0.0)
            a_model = self._loop_alpha(path, t_cur)
            t_model = path.schedule.t_of_alpha(a_model).clamp(0, 1)
        else:
            a_t, a_s = path.alpha(t_c), path.alpha(t_n)
            sigma_max = ((1 - a_s) / a_t).clamp(max=1.0)
            cap = self.strategy == "cap"
            sigma = sigma_max.clamp(max=self.eta) if cap else self.eta * sigma_max
        probs, nfe, _ = self._predict(path, state, model, t_model)
        u = uniforms(x.shape, x.device, noise)
        tokens = self._draw_x0(probs, noise)
        mask = torch.full_like(x, path.mask_index)
        p_reveal = (a_s - (1 - sigma) * a_t) / (1 - a_t).clamp_min(1e-12)
        from_masked = torch.where(u < p_reveal, tokens, mask)
        from_clean = torch.where(u < sigma, mask, x)
        x_new = torch.where(x == path.mask_index, from_masked, from_clean)
        return self._next_state(state, x_new, t_next, probs, nfe)


@register_solver("first_hitting")
class FirstHittingSampler(_DiscreteSolver):
    """First-hitting sampler (Zheng et al. 2024; Arriola et al. 2025, BD3LM): jump straight to the
    next time a token is revealed. With n masked positions, 1 - alpha(tau) = (1 - alpha(t))
    u^(1/n) (max of n i.i.d. reveal times; t <- t u^(1/n) for the log-linear schedule), then one
    uniformly chosen masked position is revealed from x_theta(z, tau). Exactly one token per step,
    so run it with L steps; the driver's grid is ignored (the time lives in the state, one time per
    row: the first position's entry of a per-position start time is used)."""

    def step(self, state, t_cur, t_next, model, *, i: int, n: int, noise=None) -> DiscreteState:
        path, x = self._path(model), state.x
        masked = x == path.mask_index
        n_masked = masked.sum(-1)
        t_row = state.t[:, 0]
        u = uniforms(x.shape[:1], x.device, noise)
        one_minus_alpha = (1 - path.alpha(t_row)) * u ** (1.0 / n_masked.clamp(min=1))
        tau = torch.where(n_masked > 0, path.schedule.t_of_alpha(1 - one_minus_alpha), t_row)
        probs, nfe, _ = self._predict(path, state, model, tau)
        pos = uniforms(x.shape, x.device, noise).masked_fill(~masked, -1.0).argmax(-1)
        rows = torch.arange(x.shape[0], device=x.device)
        tokens = self._draw_x0(probs[rows, pos], noise)
        reveal = torch.nn.functional.one_hot(pos, x.shape[1]).bool() & masked
        x_new = torch.where(reveal, tokens.unsqueeze(-1), x)
        return self._next_state(state, x_new, tau, probs, nfe)


@register_solver("confidence")
@register_solver("llada", confidence="prob")
class MaskedConfidence(_DiscreteSolver):
    """Confidence-based decoding with top-k committing (Nie et al. 2025, LLaDA, "low-confidence
    remasking"; SMDM): draw x0 for every masked position, then commit only the k most confident,
    k = round(sum over masked positions of (alpha_s - alpha_t)/(1 - alpha_t)) (the expected number
    of reveals; n_masked / steps_left for the linear schedule on a uniform grid). Confidence:
    "prob" (probability of the drawn token under x_theta), "margin" (top-1 minus top-2) or
    "random" (the unbiased any-order sampler)."""

    def __init__(self, path=None, *, confidence: str = "prob", **kw) -> None:
        super().__init__(path, **kw)
        if confidence not in ("prob", "margin", "random"):
            raise ValueError(f"confidence must be prob, margin or random, got {confidence!r}")
        self.confidence = confidence

    def step(self, state, t_cur, t_next, model, *, i: int, n: int, noise=None) -> DiscreteState:
        path, x = self._path(model), state.x
        t_cur = torch.as_tensor(t_cur, dtype=torch.float64, device=x.device)
        a_t, a_s = path.alpha(per_position(t_cur, x)), path.alpha(per_position(t_next, x))
        masked = x == path.mask_index
        p_reveal = (a_s - a_t) / (1 - a_t).clamp_min(1e-12)
        k = torch.round(torch.where(masked, p_reveal, 0.0).sum(-1)).long()
        probs, nfe, _ = self._predict(path, state, model, t_cur)
        tokens = self._draw_x0(probs, noise)
        if self.confidence == "prob":
            conf = probs.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
        elif self.confidence == "margin":
            top2 = probs.topk(2, dim=-1).values
            conf = top2[..., 0] - top2[..., 1]
        else:
            conf = uniforms(x.shape, x.device, noise)
        conf = conf.masked_fill(~masked, float("-inf"))
        rank = conf.argsort(-1, descending=True).argsort(-1)
        commit = masked & (rank < k.unsqueeze(-1))
        return self._next_state(state, torch.where(commit, tokens, x), t_next, probs, nfe)


@register_solver("udlm")
class UniformAncestral(_DiscreteSolver):
    """Ancestral sampler of uniform diffusion (UDLM / Duo): z_s ~ q(z_s | z_t, x_theta) for every
    position (UniformDiffusion.posterior_probs). ``denoiser="leave_one_out"`` takes the model
    output as trained by the UDLM loss; ``"posterior"`` takes p(x^l | z_t) and converts it."""

    path_type = UniformDiffusion

    def __init__(self, path=None, *, denoiser: str = "leave_one_out", **kw) -> None:
        super().__init__(path, **kw)
        if denoiser not in ("leave_one_out", "posterior"):
            raise ValueError(f"denoiser must be leave_one_out or posterior, got {denoiser!r}")
        self.denoiser = denoiser

    def _prepare_logits(self, path, logits: Tensor, z: Tensor, t: Tensor) -> Tensor:
        if self.denoiser == "posterior":
            return path.posterior_to_loo_logits(logits, z, t)
        return logits.double()

    def step(self, state, t_cur, t_next, model, *, i: int, n: int, noise=None) -> DiscreteState:
        path, x = self._path(model), state.x
        t_cur = torch.as_tensor(t_cur, dtype=torch.float64, device=x.device)
        probs, nfe, _ = self._predict(path, state, model, t_cur)
        if self.temperature == 0:
            probs = torch.nn.functional.one_hot(probs.argmax(-1), probs.shape[-1]).double()
        post = path.posterior_probs(probs, x, t_cur, t_next)
        return self._next_state(
            state, sample_categorical(post, noise, probs=True), t_next, probs, nfe
        )
