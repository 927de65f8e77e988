"""Text sampling recipes on top of the core's discrete samplers.

- :func:`sample_diffusion`: any core solver ("mdlm", "mdlm_cached", "first_hitting", "confidence"
  / "llada", "remdm" for a masked path; "udlm" for a uniform path) with prompts / prefixes and
  infilling (fixed positions), temperature / top-p on the x0 prediction and SMDM's unsupervised
  classifier-free guidance through the core's CFG (:func:`unsupervised_cfg`).
- :func:`sample_blocks`: block diffusion, block by block, with the exact KV cache of completed
  blocks (or without it, recomputing the prefix), any core masked solver inside a block, or
  BlockGen's AR-informed predictor-corrector (:func:`arpc_block`).

Every recipe returns a :class:`SampleResult` with the network calls it spent (batched forward
passes, and model evaluations per sample ``nfe``) and its wall time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from polydiff.core.conditioning import CFG
from polydiff.core.discrete import (
    MaskedDiffusion,
    UniformDiffusion,
    sample_categorical,
    top_p_filter,
)
from polydiff.core.progress import report
from polydiff.core.sample import sample as core_sample
from polydiff.core.solvers import solvers_for
from polydiff.text.nets.masks import block_causal_mask

__all__ = [
    "CallCounter",
    "SampleResult",
    "arpc_block",
    "make_template",
    "sample_blocks",
    "sample_diffusion",
    "unsupervised_cfg",
]

ModelFn = Callable[[Tensor, Tensor], Tensor]


@dataclass
class SampleResult:
    """Samples and what they cost."""

    tokens: Tensor  # [B, L]
    network_calls: int  # batched forward passes of the network
    nfe: float  # network evaluations per sample (rows evaluated / B; caching lowers it)
    seconds: float  # wall time

    @property
    def tokens_per_second(self) -> float:
        return self.tokens.numel() / max(self.seconds, 1e-9)


class CallCounter:
    """Counts batched network calls and the rows they evaluated; ``track(fn)`` wraps a network
    function (first argument: the batch) so that its calls are counted here."""

    def __init__(self) -> None:
        self.calls, self.rows = 0, 0

    def track(self, fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
        def counted(z: Tensor, *args, **kwargs) -> Tensor:
            self.calls += 1
            self.rows += z.shape[0]
            return fn(z, *args, **kwargs)

        return counted


# --- prompts and infilling ------------------------------------------------------------------


def make_template(
    n: int,
    length: int,
    fill_id: int,
    *,
    prompt: Tensor | Sequence[int] | None = None,
    infill: tuple[Tensor, Tensor] | None = None,
    device: torch.device | str = "cpu",
) -> tuple[Tensor, Tensor]:
    """The starting tokens ``[n, length]`` (``fill_id`` everywhere but at fixed positions) and the
    boolean mask of fixed positions.

    ``prompt``: token ids ``[T0]`` or ``[n, T0]`` placed at positions 0..T0-1 (a prefix).
    ``infill``: ``(values, known)``, both ``[length]`` or ``[n, length]``: the tokens at the
    positions where ``known`` is True are fixed, the model fills in the rest.
    """
    x = torch.full((n, length), fill_id, dtype=torch.long, device=device)
    fixed = torch.zeros(n, length, dtype=torch.bool, device=device)
    if prompt is not None:
        prompt = torch.as_tensor(prompt, dtype=torch.long, device=device)
        prompt = prompt.expand(n, -1) if prompt.dim() == 1 else prompt
        if prompt.dim() != 2 or prompt.shape[0] != n:
            raise ValueError(f"prompt must be [T0] or [{n}, T0], got {tuple(prompt.shape)}")
        if prompt.shape[1] > length:
            raise ValueError(
                f"prompt of {prompt.shape[1]} tokens is longer than the context of {length} "
                "tokens: shorten the prompt or sample a longer sequence"
            )
        x[:, : prompt.shape[1]] = prompt
        fixed[:, : prompt.shape[1]] = True
    if infill is not None:
        values, known = (torch.as_tensor(a, device=device) for a in infill)
        if values.shape[-1] != length or known.shape[-1] != length:
            raise ValueError(
                f"infill values and known mask must have {length} positions, got "
                f"{tuple(values.shape)} and {tuple(known.shape)}"
            )
        known = known.bool().expand(n, length)
        x = torch.where(known, values.long().expand(n, length), x)
        fixed = fixed | known
    return x, fixed


def _fix_hook(values: Tensor, fixed: Tensor) -> Callable[..., Tensor]:
    """x_t hook that re-imposes the fixed tokens after every step (remasking and uniform
    samplers would otherwise change them; for the other masked samplers it changes nothing)."""

    def hook(x: Tensor, t: Tensor, noise=None) -> Tensor:
        return torch.where(fixed, values.to(x.dtype), x)

    return hook


# --- classifier-free guidance ------------------------------------------------------------------


def unsupervised_cfg(
    prompt_positions: Tensor,
    mask_id: int,
    scale: float,
    interval: tuple[float, float] | None = None,
) -> CFG:
    """SMDM's unsupervised classifier-free guidance (Nie et al., 2025, "Scaling up Masked
    Diffusion Models on Text", Sec. 3) as the core's :class:`~polydiff.core.conditioning.CFG`:
    the unconditional prediction is the same network with the prompt masked out, so no
    conditional training is needed. ``scale`` is SMDM's w (0: the conditional model), the
    core's ``1 + w``; ``interval``: guide only for t in it (the core's interval).
    ``prompt_positions``: bool ``[L]``, ``[1, L]`` (shared by all rows) or ``[B, L]``."""
    positions = prompt_positions.reshape(-1, prompt_positions.shape[-1])

    def mask_prompt(z: Tensor) -> Tensor:
        if positions.shape[0] not in (1, z.shape[0]):
            raise ValueError(
                f"per-row prompt positions ({positions.shape[0]} rows) but the model is "
                f"called on {z.shape[0]} rows (a caching solver): use a solver without "
                "no-update caching, or the same prompt positions for every row"
            )
        return torch.where(positions.expand_as(z), torch.full_like(z, mask_id), z)

    return CFG(1.0 + scale, drop=mask_prompt, interval=interval)


# --- whole-sequence diffusion ------------------------------------------------------------------


def sample_diffusion(
    model_fn: ModelFn,
    path: MaskedDiffusion | UniformDiffusion,
    n: int,
    length: int,
    *,
    steps: int,
    solver: str = "mdlm",
    prompt: Tensor | Sequence[int] | None = None,
    infill: tuple[Tensor, Tensor] | None = None,
    temperature: float = 1.0,
    top_p: float = 1.0,
    cfg_scale: float = 0.0,
    cfg_interval: tuple[float, float] | None = None,
    solver_kwargs: dict | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> SampleResult:
    """Sample ``n`` sequences of ``length`` tokens with a core discrete solver.

    ``model_fn(z, t)`` returns x0 logits ``[B, L, K]``. Prompt / infill positions are fixed
    (:func:`make_template`); with ``cfg_scale`` > 0 the prediction is guided by
    :func:`unsupervised_cfg` (the fixed positions masked; ``cfg_interval``: the times guided).
    ``temperature`` / ``top_p`` act on the x0 prediction (never the posterior). For
    ``solver="first_hitting"`` ``steps`` is raised to the number of free positions (it reveals
    one token per step).
    """
    fitting = solvers_for(path)
    if isinstance(solver, str) and solver not in fitting:
        raise ValueError(
            f"solver {solver!r} does not sample a {type(path).__name__}; "
            f"use one of {', '.join(fitting)}"
        )
    counter = CallCounter()
    masked = isinstance(path, MaskedDiffusion)
    fill = path.mask_index if masked else 0
    x, fixed = make_template(n, length, fill, prompt=prompt, infill=infill, device=device)
    if not masked:  # uniform diffusion starts from uniform noise at the free positions
        noise = path.prior((n, length), device=device, generator=generator)
        x = torch.where(fixed, x, noise)
    if not cfg_scale >= 0:
        raise ValueError(f"cfg_scale must be >= 0 (0: no guidance), got {cfg_scale}")
    guidance = []
    if cfg_scale:
        if not masked:
            raise ValueError("unsupervised CFG masks the prompt: it needs a masked path")
        shared = bool((fixed == fixed[:1]).all())  # once, before the loop
        positions = fixed[:1] if shared else fixed
        guidance.append(unsupervised_cfg(positions, path.mask_index, cfg_scale, cfg_interval))
    if solver == "first_hitting":
        steps = max(steps, length)
    kwargs = {"temperature": temperature, "top_p": top_p, **(solver_kwargs or {})}
    start = time.perf_counter()
    tokens = core_sample(
        counter.track(model_fn),
        x,
        path=path,
        solver=solver,
        steps=steps,
        prediction="logits",
        grid="uniform",
        xt_hook=_fix_hook(x, fixed),
        guidance=guidance,
        generator=generator,
        solver_kwargs=kwargs,
    )
    seconds = time.perf_counter() - start
    return SampleResult(tokens, counter.calls, counter.rows / n, seconds)


# --- block diffusion ---------------------------------------------------------------------------


def _x0_log_probs(
    path: MaskedDiffusion, logits: Tensor, z: Tensor, temperature: float, top_p: float
) -> Tensor:
    """SUBS x0 log-probabilities with temperature / top-p applied to the prediction."""
    if temperature > 0:
        logits = top_p_filter(logits.double() / temperature, top_p)
    return path.x0_log_probs(logits, z)


def arpc_block(
    net,
    path: MaskedDiffusion,
    z: Tensor,
    fixed: Tensor,
    steps: int,
    *,
    cache=None,
    ar_cache=None,
    temperature: float = 1.0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Decode one block with BlockGen's AR-informed predictor-corrector (ARPC).

    Each step s < t: predict a full clean block x0 ~ x_theta(z_t) (the predictor), score every
    token with the same model in AR mode (``net.verify_block``: log p(x_i | x_<i), the
    corrector's signal), and re-mask the k = round((1 - alpha_s) n_free) least likely free
    tokens; tokens revealed earlier may thus be corrected. The last step keeps the prediction
    (no verification), so a block costs 2 steps - 1 calls. Fixed (prompt) tokens never change.
    """
    if steps < 1:
        raise ValueError(f"ARPC needs at least one step per block, got steps={steps}")
    ts = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    n_free = (~fixed).sum(-1, keepdim=True).double()
    mask = torch.full_like(z, path.mask_index)
    for i in range(steps):
        logits = net.denoise_block(z, cache, ts[i].expand(z.shape[0]).to(z.device))
        log_p = _x0_log_probs(path, logits, z, temperature, top_p)
        x0 = log_p.argmax(-1) if temperature == 0 else sample_categorical(log_p, generator)
        x0 = torch.where(fixed, z, x0)
        report(i + 1, steps)
        if i == steps - 1:
            return x0
        ar = torch.log_softmax(net.verify_block(x0, path.mask_index, ar_cache).double(), -1)
        score = ar.gather(-1, x0.unsqueeze(-1)).squeeze(-1).masked_fill(fixed, float("inf"))
        alpha_s = path.alpha(ts[i + 1].to(z.device))
        k = torch.round((1 - alpha_s) * n_free).long()
        rank = score.argsort(-1).argsort(-1)
        z = torch.where(rank < k, mask, x0)
    return z


def sample_blocks(
    net,
    path: MaskedDiffusion,
    n: int,
    length: int,
    block_size: int,
    *,
    steps: int,
    solver: str = "mdlm",
    arpc: bool = False,
    use_cache: bool = True,
    skip_unchanged: bool | None = None,
    prompt: Tensor | Sequence[int] | None = None,
    temperature: float = 1.0,
    top_p: float = 1.0,
    solver_kwargs: dict | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> SampleResult:
    """Block-by-block sampling of a block diffusion model (BD3LM, Arriola et al., 2025, Sec. 4;
    BlockGen): ``steps`` denoising steps per block, then the finished block's keys / values are
    appended to the KV cache with one forward (``net.cache_clean_block``), so later blocks never
    recompute the prefix. ``use_cache=False`` recomputes the prefix at every call under
    :func:`block_causal_mask` (same logits, tested; slower). ``arpc=True`` decodes each block
    with :func:`arpc_block` (it also keeps the causal AR-mode cache). A prompt is a prefix: its
    complete blocks are only cached, a partial block is sampled with the prompt tokens fixed.
    ``skip_unchanged`` (default: when the network has no time conditioning) is MDLM's
    no-update caching inside a block (:class:`_NoUpdateCache`): same samples, fewer rows
    evaluated.
    """
    if skip_unchanged is None:
        skip_unchanged = getattr(getattr(net, "backbone", None), "time_embed", None) is None
    if block_size < 1:
        raise ValueError(f"block_size={block_size} must be at least 1")
    if arpc and not use_cache:
        raise ValueError("ARPC decodes against the KV caches: use use_cache=True")
    if solver == "mdlm_cached" or (solver_kwargs or {}).get("cache"):
        # the core's no-update cache calls the model on a subset of rows without saying which,
        # so the rows of the KV cache / prefix could not be matched
        raise ValueError(f"solver {solver!r} with no-update caching is not supported per block")
    x, fixed = make_template(n, length, path.mask_index, prompt=prompt, device=device)
    prompt_len = 0 if prompt is None else torch.as_tensor(prompt).shape[-1]
    calls = CallCounter()
    denoise, cache_block = calls.track(net.denoise_block), calls.track(net.cache_clean_block)
    arpc_net = _CountedBlockNet(denoise, calls.track(net.verify_block))
    full = calls.track(net.__call__) if not use_cache else None
    cache = ar_cache = None
    kwargs = {"temperature": temperature, "top_p": top_p, **(solver_kwargs or {})}
    start = time.perf_counter()
    for lo in range(0, length, block_size):
        hi = min(lo + block_size, length)
        if hi > prompt_len:  # this block has free positions: decode it
            z, fix = x[:, lo:hi], fixed[:, lo:hi]
            if arpc:
                block = arpc_block(
                    arpc_net, path, z, fix, steps, cache=cache, ar_cache=ar_cache,
                    temperature=temperature, top_p=top_p, generator=generator,
                )  # fmt: skip
            else:
                if use_cache:
                    model_fn = _cached_fn(denoise, cache)
                else:
                    model_fn = _uncached_fn(full, x[:, :lo], block_size)
                if skip_unchanged:
                    model_fn = _NoUpdateCache(model_fn)
                block = core_sample(
                    model_fn, z, path=path, solver=solver, steps=steps, prediction="logits",
                    grid="uniform", xt_hook=_fix_hook(z, fix), generator=generator,
                    solver_kwargs=kwargs,
                )  # fmt: skip
            x = torch.cat((x[:, :lo], block, x[:, hi:]), dim=1)
        if use_cache and hi < length:
            cache = cache_block(x[:, lo:hi], cache)
            if arpc:
                ar_cache = cache_block(x[:, lo:hi], ar_cache, causal=True)
    seconds = time.perf_counter() - start
    return SampleResult(x, calls.calls, calls.rows / n, seconds)


RowModelFn = Callable[[Tensor, Tensor, Tensor | None], Tensor]
"""``fn(z, t, rows)``: logits of the batch rows ``rows`` (None: all rows) of a block."""


def _cached_fn(denoise, cache) -> RowModelFn:
    def fn(z: Tensor, t: Tensor, rows: Tensor | None = None) -> Tensor:
        sub = cache if cache is None or rows is None else cache.index_select(rows)
        return denoise(z, sub, t)

    return fn


def _uncached_fn(full, prefix: Tensor, block_size: int) -> RowModelFn:
    def fn(z: Tensor, t: Tensor, rows: Tensor | None = None) -> Tensor:
        pre = prefix if rows is None else prefix[rows]
        L = pre.shape[1] + z.shape[1]
        t_tok = torch.cat(  # clean prefix at t = 0, the noisy block at t
            (torch.zeros_like(pre, dtype=torch.float64), t.reshape(-1, 1).expand_as(z)), 1
        )
        mask = block_causal_mask(L, block_size, device=z.device)
        return full(torch.cat((pre, z), 1), t_tok, attn_mask=mask)[:, -z.shape[1] :]

    return fn


class _NoUpdateCache:
    """MDLM's no-update caching (Sahoo et al., 2024, Sec. 4.2) for one block: a row whose
    tokens did not change since the previous call gets its previous logits back, only changed
    rows are evaluated (against their rows of the KV cache). Exact for a network that ignores
    t; finding the changed rows is one host sync per step."""

    def __init__(self, fn: RowModelFn) -> None:
        self.fn = fn
        self.last_z: Tensor | None = None
        self.last_logits: Tensor | None = None

    def __call__(self, z: Tensor, t: Tensor) -> Tensor:
        if self.last_z is None:
            logits = self.fn(z, t, None)
        else:
            changed = (z != self.last_z).any(-1).nonzero(as_tuple=True)[0]
            logits = self.last_logits
            if changed.numel() > 0:
                fresh = self.fn(z[changed], t.reshape(-1)[changed], changed)
                logits = logits.index_copy(0, changed, fresh.to(logits.dtype))
        self.last_z, self.last_logits = z, logits
        return logits


class _CountedBlockNet:
    """What :func:`arpc_block` calls, with counted calls."""

    def __init__(self, denoise_block, verify_block) -> None:
        self.denoise_block, self.verify_block = denoise_block, verify_block
