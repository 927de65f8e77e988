"""The sampling driver: one loop that runs any registered solver, with hooks.

    x = sample(model_fn, x_init, path=VPLinear(), solver="dpmpp_2m", steps=20, prediction="eps")

The loop only indexes a precomputed grid and calls ``solver.step``; every policy (warm-up order,
lower order at the end, final denoising) is decided with Python ints, and nothing in the loop
reads a tensor value on the host, so it runs unchanged under CUDA graphs / torch.compile.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from polydiff.core.conditioning import bind_condition
from polydiff.core.grids import make_grid
from polydiff.core.param import Denoiser
from polydiff.core.paths import AffinePath
from polydiff.core.progress import report
from polydiff.core.solvers.base import State, get_solver
from polydiff.core.utils import expand_like

X0Hook = Callable[[Tensor, Tensor, Tensor], Tensor]  # (x0_hat, x_t, t) -> x0_hat
XtHook = Callable[..., Tensor]  # (x_t, t, noise) -> x_t
Callback = Callable[[int, int, Tensor, State], None]  # (i, n, t_next, state)


class NoiseSource:
    """Standard normal noise for the solvers: from a ``torch.Generator`` (reproducible seeds) or
    from a user-supplied sequence of tensors consumed in order (one per request)."""

    def __init__(
        self, generator: torch.Generator | None = None, noises: Sequence[Tensor] | None = None
    ):
        self.generator, self.noises, self.used = generator, noises, 0

    def __call__(self, like: Tensor) -> Tensor:
        if self.noises is not None:
            if self.used >= len(self.noises):
                raise ValueError(
                    f"noise: the supplied list has {len(self.noises)} tensors, "
                    "but the sampler needs more"
                )
            z = self.noises[self.used]
            if z.shape != like.shape:
                raise ValueError(
                    f"noise[{self.used}] has shape {tuple(z.shape)}, expected {tuple(like.shape)}"
                )
            self.used += 1
            return z.to(like)
        self.used += 1
        return torch.randn(
            like.shape, generator=self.generator, dtype=like.dtype, device=like.device
        )


class _HookedModel:
    """Applies the x0 hook (clamp / threshold / projection) to the data prediction, in the
    uncentered variable (x0 = D + mu on mean-reverting paths)."""

    def __init__(self, model: Any, hook: X0Hook, mu: Tensor | None) -> None:
        self.model, self.hook, self.mu = model, hook, mu
        self.path = model.path

    def __call__(self, y: Tensor, t: Tensor) -> Tensor:
        D = self.model(y, t)
        if self.mu is None:
            return self.hook(D, y, t)
        return self.hook(D + self.mu, y + self.mu, t) - self.mu


class _CachedModel:
    """Remembers one (x, t) -> D evaluation by identity, so SMC's potential evaluation at the start
    of a step is reused by the solver's first model call (no extra network evaluation)."""

    def __init__(self, model: Any) -> None:
        self.model, self.path = model, getattr(model, "path", None)
        self._key: tuple[Tensor, Tensor] | None = None
        self._value: Tensor | None = None

    def prime(self, x: Tensor, t: Tensor, value: Tensor) -> None:
        self._key, self._value = (x, t), value

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        if self._key is not None and x is self._key[0] and t is self._key[1]:
            return self._value
        return self.model(x, t)


class _GridPath:
    """An affine path whose schedule is tabulated on the sampling grid.

    Solvers and the Denoiser evaluate alpha, sigma, lambda, ... at the grid times every step; each
    is a chain of tiny float64 ops whose eager dispatch cost dominates a cheap model. Here every
    schedule function is evaluated once, vectorised over the whole grid (on first use), and a call
    at a grid time (recognised by tensor identity: the driver passes the same tensor objects) is a
    list lookup. Any other time (intermediate stages, SMC) falls through to the path itself, and
    everything else is forwarded, so solvers see an ordinary path with identical values.
    """

    _TABULATED = ("alpha", "sigma", "log_snr", "d_alpha", "d_sigma", "drift", "diffusion2")

    def __init__(self, path: AffinePath, ts: Tensor, times: list[Tensor]) -> None:
        self._path, self._ts, self._times = path, ts, times
        self._slot = {id(t): k for k, t in enumerate(times)}
        self._tables: dict[Any, tuple] = {}
        for name in self._TABULATED:
            setattr(self, name, self._tabulated(name))

    def _tabulated(self, name: str) -> Callable[[Tensor], Tensor]:
        fn = getattr(self._path, name)

        def lookup(t: Tensor) -> Tensor:
            k = self._slot.get(id(t))
            if k is None or self._times[k] is not t:
                return fn(t)
            table = self._tables.get(name)
            if table is None:
                table = self._tables[name] = fn(self._ts).unbind(0)
            return table[k]

        return lookup

    def step_table(
        self, fn: Callable, t: Tensor, t_next: Tensor, dtype: torch.dtype | None = None
    ) -> tuple[Tensor, ...]:
        """``fn(path, t, t_next)`` (cast to ``dtype``) for a grid step, from a table that holds it
        for every step of the grid: one vectorised call of ``fn`` per (fn, dtype); see
        ``polydiff.core.solvers.per_step_coefficients``."""
        k = self._slot.get(id(t))
        hit = k is not None and self._times[k] is t and k + 1 < len(self._times)
        if not (hit and self._times[k + 1] is t_next):
            coefficients = fn(self._path, t, t_next)
            return coefficients if dtype is None else tuple(c.to(dtype) for c in coefficients)
        table = self._tables.get((fn, dtype))
        if table is None:
            columns = fn(self._path, self._ts[:-1], self._ts[1:])
            if dtype is not None:
                columns = [c.to(dtype) for c in columns]
            table = self._tables[(fn, dtype)] = tuple(zip(*(c.unbind(0) for c in columns)))
        return table[k]

    def __getattr__(self, name: str) -> Any:  # everything that is not tabulated
        return getattr(self._path, name)

    def __repr__(self) -> str:
        return repr(self._path)


def _times(ts: Tensor, batch: int) -> list[Tensor]:
    """The grid as a list of per-step time tensors (checked once, before the loop)."""
    if ts.ndim > 1 and ts.shape[1] != batch:
        raise ValueError(f"per-sample grid: entry has leading size {ts.shape[1]}, batch is {batch}")
    return list(ts.unbind(0))


@dataclasses.dataclass
class StepInfo:
    """What an after-step hook sees of one step, uncentered (x, not x - mu):

    ``x_t`` the sample at ``t``; ``x_next`` the solver's result at ``t_next``; ``x0_hat`` the data
    prediction (discrete solvers: the x0 logits; structured samples: a dict) the step took at
    ``(x_t, t)``, None if it took none there (e.g. a row skipped by no-update caching); ``eps``
    the matching noise prediction on affine paths. ``noise`` draws standard normals like the
    solver's own (same stream); ``state`` is the solver state after the step.
    """

    x_t: Any
    x_next: Any
    x0_hat: Any
    t: Tensor
    t_next: Tensor
    i: int
    n: int
    path: Any
    noise: Callable[[Tensor], Tensor]
    state: State
    mu: Tensor | None = None

    @property
    def eps(self) -> Tensor:
        """(x_t - mu - alpha (x0_hat - mu)) / sigma on an affine path."""
        y, x0 = self.x_t, self.x0_hat
        if self.mu is not None:
            y, x0 = y - self.mu, x0 - self.mu
        a, s = expand_like(self.path.alpha(self.t), y), expand_like(self.path.sigma(self.t), y)
        return (y - a * x0) / s


class _XtHook:
    """The ``xt_hook(x_t, t, noise)`` argument as an after-step hook."""

    def __init__(self, fn: XtHook) -> None:
        self.fn = fn

    def after_step(self, info: StepInfo) -> Any:
        return self.fn(info.x_next, info.t_next, info.noise)


class _X0Hook:
    """The ``x0_hook(x0_hat, x_t, t)`` argument as a data-prediction wrapper."""

    def __init__(self, fn: X0Hook) -> None:
        self.fn = fn

    def wrap(self, model: Any, mu: Tensor | None = None) -> Any:
        return _HookedModel(model, self.fn, mu)


def _as_hook(hook: Any) -> Any:
    """A plain callable in ``hooks=`` is an after-step hook ``hook(info) -> x_next``."""
    if any(hasattr(hook, m) for m in ("wrap_fn", "wrap", "before_step", "after_step")):
        return hook
    if callable(hook):
        return _AfterStep(hook)
    raise TypeError(f"a hook must be callable or have wrap / before_step / after_step: {hook!r}")


class _AfterStep:
    def __init__(self, fn: Callable[[StepInfo], Any]) -> None:
        self.fn = fn

    def after_step(self, info: StepInfo) -> Any:
        return self.fn(info)


class _Recorder:
    """Keeps the first prediction a step takes at its starting sample (for ``StepInfo.x0_hat``);
    everything else is forwarded to the wrapped model."""

    def __init__(self, model: Any) -> None:
        self.model, self.path = model, getattr(model, "path", None)
        self.watch: Any = None
        self.value: Any = None

    def expect(self, x: Any) -> None:
        self.watch, self.value = x, None

    def __call__(self, x: Any, t: Tensor, *extra: Any) -> Any:
        out = self.model(x, t, *extra)
        if x is self.watch:
            self.watch, self.value = None, out
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


def _tree(fn: Callable[[Tensor], Tensor], x: Any) -> Any:
    """``fn`` on a tensor or on every field of a structured sample (a dict of tensors)."""
    return {k: fn(v) for k, v in x.items()} if isinstance(x, dict) else fn(x)


def _work_dtype(x: Tensor) -> Tensor:
    # no fp16/bf16 solver arithmetic; integer states (discrete tokens) are kept as they are
    if not x.is_floating_point():
        return x
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _default_grid(path: Any, t_start: float | None, t_end: float | None) -> str:
    lam = path.log_snr(
        torch.tensor(
            [path.t_start if t_start is None else t_start, path.t_end if t_end is None else t_end],
            dtype=torch.float64,
        )
    )
    return "logsnr" if bool(torch.isfinite(lam).all()) else "uniform"


def sample(
    model_fn: Callable[..., Any],
    x_init: Any,
    *,
    path: Any,
    solver: str | Any = "dpmpp_2m",
    steps: int | None = 20,
    prediction: str | dict[str, str] = "eps",
    grid: str | Tensor | None = None,
    t_start: float | None = None,
    t_end: float | None = None,
    mu: Tensor | None = None,
    cond: Any = None,
    mask: dict[str, Tensor] | None = None,
    denoise_final: bool = False,
    x0_hook: X0Hook | None = None,
    xt_hook: XtHook | None = None,
    guidance: Sequence[Any] = (),
    hooks: Sequence[Any] = (),
    smc: Any | None = None,
    callback: Callback | None = None,
    generator: torch.Generator | None = None,
    noise: Sequence[Tensor] | Callable[[Tensor], Tensor] | None = None,
    solver_kwargs: dict | None = None,
    grid_kwargs: dict | None = None,
    return_state: bool = False,
):
    """Integrate from ``x_init`` at ``t_start`` to ``t_end`` with any registered solver.

    Args:
        model_fn: ``model_fn(x, t)`` (or ``model_fn(x, t, cond)`` when ``cond`` is given)
            returning the ``prediction`` ("eps", "x0", "v", "score", "velocity"; "logits" for
            discrete solvers); ``t`` has shape [B] (or [B, L] for per-position grids), x's dtype.
        x_init: the starting sample (e.g. ``path.prior_sample(shape)``), batch-leading; or a
            structured sample, a dict of such tensors (then ``path``, ``solver`` and
            ``prediction`` are dicts by field, see :mod:`polydiff.core.product`, and
            ``model_fn(x, t[, cond])`` takes and returns dicts: one call per step).
        path: the forward process (``polydiff.core.paths``), or a dict of them by field.
        solver: a registered name (see ``list_solvers()``) or a solver object (dict by field).
        steps: number of steps n (ignored when ``grid`` is a tensor).
        grid: grid name (default: "logsnr" if lambda is finite at both ends, else "uniform") or a
            tensor of times [n+1] / [n+1, B] / [n+1, B, L] (per-sample / per-position time).
        mu: the condition of a mean-reverting path (x_t -> mu); solvers run on x - mu.
        cond: the model's condition, passed as ``model_fn(x, t, cond)`` (classifier-free
            guidance: ``guidance=[CFG(...)]``, :mod:`polydiff.core.conditioning`).
        mask: structured samples: bool tensors by field, True where the field is sampled;
            other entries keep their ``x_init`` values (padding, e.g. absent atoms).
        denoise_final: return the x0 prediction at t_end (one extra evaluation).
        x0_hook: ``hook(x0_hat, x_t, t)`` applied to every data prediction (clamp, projection).
        xt_hook: ``hook(x_t, t, noise)`` applied after every step (inpainting, data consistency).
        guidance: guidance objects (CFG, gradient guidance, ...), applied before ``hooks``.
        hooks: objects with any of ``wrap_fn(model_fn, cond=, prediction=)`` (raw model),
            ``wrap(model, mu=)`` (data prediction), ``before_step(x_t, t, i, n, noise) -> x_t``
            and ``after_step(info: StepInfo) -> x_next``; a plain callable is an after-step hook.
        smc: a :class:`polydiff.core.guidance.SMC` (Feynman-Kac steering with resampling).
        callback: ``callback(i, n, t_next, state)`` after each step (progress bars, traces).
        generator / noise: the noise source: a generator, or a list of tensors, or a callable.
        return_state: also return the final solver state.
    """
    structured = isinstance(x_init, dict)
    if structured:
        from polydiff.core.product import ProductSolver, product_paths

        solver = ProductSolver.build(solver, x_init, solver_kwargs)
        path = product_paths(path, x_init)
        prediction = (
            prediction if isinstance(prediction, dict) else dict.fromkeys(x_init, prediction)
        )
        if mu is not None:
            raise ValueError("structured samples take no mean-reverting condition mu")
    else:
        if mask is not None:
            raise ValueError("mask= is for structured samples (a dict x_init)")
        solver = get_solver(solver, **(solver_kwargs or {}))
    # fields share one time axis: named grids are built on the first field's path
    time_path = next(iter(path.values())) if structured else path
    if grid is None:
        grid = _default_grid(time_path, t_start, t_end) if not structured else "uniform"
    bounds = {"t_start": t_start, "t_end": t_end} if isinstance(grid, str) else {}
    paused = getattr(solver, "allows_paused_times", False)
    ts = make_grid(grid, steps, time_path, allow_paused=paused, **bounds, **(grid_kwargs or {}))
    first = next(iter(x_init.values())) if structured else x_init
    ts = ts.to(first.device)
    n = ts.shape[0] - 1
    # a host-side check of the inputs, left out while compiling (no data-dependent branch)
    if getattr(solver, "needs_finite_log_snr", False) and not torch.compiler.is_compiling():
        start = path.log_snr(ts[0].cpu())
        if not bool((start > -torch.inf).all()):  # alpha = 0; sigma = 0 is fine (clean context)
            raise ValueError(
                f"solver {solver!r} works in sigma/alpha and needs alpha > 0 at the start of "
                "the grid; start below t = 1 on a flow path, or use flow_euler / flow_heun / "
                "dpmpp_2m / unipc (grids may end at sigma = 0: use heun's final_euler=True)"
            )
    if smc is not None and ts.ndim > 1:
        raise ValueError("smc with a per-sample grid is not supported (resampling would mix times)")
    out_dtype = _tree(lambda v: v.dtype, x_init)
    if mu is not None:
        mu = _work_dtype(mu)
    batch = first.shape[0]
    times = _times(ts, batch)

    all_hooks = [_as_hook(h) for h in (*guidance, *hooks)]
    if x0_hook is not None:
        all_hooks.insert(len(guidance), _X0Hook(x0_hook))
    if xt_hook is not None:
        all_hooks.insert(len(guidance), _XtHook(xt_hook))
    raw = [h for h in all_hooks if hasattr(h, "wrap_fn")]
    if len(raw) > 1:
        raise ValueError(f"at most one raw-model wrapper (classifier-free guidance), got {raw}")
    # a raw-model wrapper (CFG) sees the user's model and the condition; else the condition is
    # bound here
    fn = (
        raw[0].wrap_fn(model_fn, cond=cond, prediction=prediction)
        if raw
        else bind_condition(model_fn, cond)
    )
    model = solver.wrap_model(fn, path, prediction, mu=mu)
    _tabulate(model, ts, times, out_dtype)
    for h in all_hooks:  # guidance first, so the x0 hook sees the guided prediction
        if hasattr(h, "wrap"):
            if structured:
                raise ValueError(
                    "structured samples: data-prediction wrappers (x0_hook, gradient guidance) "
                    "are not supported; use after-step hooks or CFG"
                )
            model = h.wrap(model, mu=mu)
    if smc is not None and not structured:  # a product model caches SMC's evaluation itself
        model = _CachedModel(model)
    before = [h.before_step for h in all_hooks if hasattr(h, "before_step")]
    after = [h.after_step for h in all_hooks if hasattr(h, "after_step")]
    if structured:
        model.record(bool(after) or smc is not None)
    recorder = _Recorder(model) if after and not structured else None
    if recorder is not None:
        model = recorder
    noise_fn = noise if callable(noise) else NoiseSource(generator, noise)

    y = _tree(_work_dtype, x_init)
    if mu is not None:
        y = y - mu
    state = solver.init(y, times[0])
    if mask is not None:
        state = state.replace(mask=mask)
    smc_state = smc.init(batch, first.device) if smc is not None else None
    for i in range(n):
        t_cur, t_next = times[i], times[i + 1]
        if before:
            x = state.x if mu is None else state.x + mu
            for hook in before:
                x = hook(x, t_cur, i, n, noise_fn)
            state = state.replace(x=x if mu is None else x - mu)
        if smc is not None:
            state, smc_state = smc.step(state, t_cur, model, smc_state, mu=mu, generator=generator)
        if recorder is not None:
            recorder.expect(state.x)
        x_t = state.x
        state = solver.step(state, t_cur, t_next, model, i=i, n=n, noise=noise_fn)
        if after:
            shift = (lambda v: v) if mu is None else (lambda v: v + mu)
            x0_hat = model.last if structured else recorder.value
            info = StepInfo(
                x_t=_tree(shift, x_t), x_next=_tree(shift, state.x),
                x0_hat=None if x0_hat is None else _tree(shift, x0_hat), t=t_cur, t_next=t_next,
                i=i, n=n, path=path, noise=noise_fn, state=state, mu=mu,
            )  # fmt: skip
            for hook in after:
                info.x_next = hook(info)
            state = state.replace(x=info.x_next if mu is None else info.x_next - mu)
        if callback is not None:
            callback(i, n, t_next, state)
        report(i + 1, n)
    y = model(state.x, times[-1]) if denoise_final else state.x
    if smc is not None:
        state, y = smc.finish(state, y, smc_state, mu=mu, generator=generator)
    x = y if mu is None else y + mu
    x = {k: v.to(out_dtype[k]) for k, v in x.items()} if structured else x.to(out_dtype)
    return (x, state) if return_state else x


def _tabulate(model: Any, ts: Tensor, times: list[Tensor], out_dtype: Any) -> None:
    """Continuous models see the caller's dtype and a schedule tabulated on the grid."""
    if isinstance(model, Denoiser):
        model.model_dtype = out_dtype  # the network sees the caller's dtype
        if isinstance(model.path, AffinePath):  # continuous solvers: tabulate the schedule
            model.path = _GridPath(model.path, ts, times)
    for name, field in getattr(model, "field_models", {}).items():
        _tabulate(field, ts, times, out_dtype[name])


__all__ = ["NoiseSource", "StepInfo", "sample"]
