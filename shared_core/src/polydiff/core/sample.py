"""The sampling driver: one loop that runs any registered solver, with hooks.

    x = sample(model_fn, x_init, path=VPLinear(), solver="dpmpp_2m", steps=20, prediction="eps")

The loop only indexes a precomputed grid and calls ``solver.step``; every policy (warm-up order,
lower order at the end, final denoising) is decided with Python ints, and nothing in the loop
reads a tensor value on the host, so it runs unchanged under CUDA graphs / torch.compile.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from polydiff.core.grids import make_grid
from polydiff.core.param import Denoiser
from polydiff.core.paths import AffinePath
from polydiff.core.solvers.base import State, get_solver

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


def sample(
    model_fn: Callable[[Tensor, Tensor], Tensor],
    x_init: Tensor,
    *,
    path: Any,
    solver: str | Any = "dpmpp_2m",
    steps: int | None = 20,
    prediction: str = "eps",
    grid: str | Tensor | None = None,
    t_start: float | None = None,
    t_end: float | None = None,
    mu: Tensor | None = None,
    denoise_final: bool = False,
    x0_hook: X0Hook | None = None,
    xt_hook: XtHook | None = None,
    guidance: Sequence[Any] = (),
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
        model_fn: ``model_fn(x, t)`` returning the ``prediction`` ("eps", "x0", "v", "score",
            "velocity"); ``t`` has shape [B] (or [B, L] for per-position grids), x's dtype.
        x_init: the starting sample (e.g. ``path.prior_sample(shape)``), batch-leading.
        path: the forward process (``polydiff.core.paths``).
        solver: a registered name (see ``list_solvers()``) or a solver object.
        steps: number of steps n (ignored when ``grid`` is a tensor).
        grid: grid name (default: "logsnr" if lambda is finite at both ends, else "uniform") or a
            tensor of times [n+1] / [n+1, B] / [n+1, B, L] (per-sample / per-position time).
        mu: the condition of a mean-reverting path (x_t -> mu); solvers run on x - mu.
        denoise_final: return the x0 prediction at t_end (one extra evaluation).
        x0_hook: ``hook(x0_hat, x_t, t)`` applied to every data prediction (clamp, projection).
        xt_hook: ``hook(x_t, t, noise)`` applied after every step (inpainting, data consistency).
        guidance: wrappers with ``wrap(model) -> model`` on the data prediction (CFG, DPS).
        smc: a :class:`polydiff.core.guidance.SMC` (Feynman-Kac steering with resampling).
        callback: ``callback(i, n, t_next, state)`` after each step (progress bars, traces).
        generator / noise: the noise source: a generator, or a list of tensors, or a callable.
        return_state: also return the final solver state.
    """
    solver = get_solver(solver, **(solver_kwargs or {}))
    if grid is None:
        lam = path.log_snr(
            torch.tensor(
                [
                    path.t_start if t_start is None else t_start,
                    path.t_end if t_end is None else t_end,
                ],
                dtype=torch.float64,
            )
        )
        grid = "logsnr" if bool(torch.isfinite(lam).all()) else "uniform"
    bounds = {"t_start": t_start, "t_end": t_end} if isinstance(grid, str) else {}
    paused = getattr(solver, "allows_paused_times", False)
    ts = make_grid(grid, steps, path, allow_paused=paused, **bounds, **(grid_kwargs or {}))
    ts = ts.to(x_init.device)
    n = ts.shape[0] - 1
    if getattr(solver, "needs_finite_log_snr", False):
        start = path.log_snr(ts[0].cpu())
        if not bool(torch.isfinite(start).all()):
            raise ValueError(
                f"solver {solver!r} works in sigma/alpha and needs alpha > 0 at the start of "
                "the grid; start below t = 1 on a flow path, or use flow_euler / flow_heun / "
                "dpmpp_2m / unipc (grids may end at sigma = 0: use heun's final_euler=True)"
            )
    if smc is not None and ts.ndim > 1:
        raise ValueError("smc with a per-sample grid is not supported (resampling would mix times)")
    out_dtype = x_init.dtype
    # no fp16/bf16 solver arithmetic; integer states (discrete tokens) are kept as they are
    work_dtype = (
        torch.promote_types(out_dtype, torch.float32) if x_init.is_floating_point() else out_dtype
    )
    if mu is not None:
        mu = mu.to(work_dtype)
    batch = x_init.shape[0]
    times = _times(ts, batch)
    model = solver.wrap_model(model_fn, path, prediction, mu=mu)
    if isinstance(model, Denoiser):
        model.model_dtype = out_dtype  # the network sees the caller's dtype
        if isinstance(model.path, AffinePath):  # continuous solvers: tabulate the schedule
            model.path = _GridPath(model.path, ts, times)
    for g in guidance:  # guidance first, so the x0 hook sees the guided prediction
        model = g.wrap(model, mu=mu)
    if x0_hook is not None:
        model = _HookedModel(model, x0_hook, mu)
    if smc is not None:
        model = _CachedModel(model)
    noise_fn = noise if callable(noise) else NoiseSource(generator, noise)

    y = x_init.to(work_dtype)
    if mu is not None:
        y = y - mu
    state = solver.init(y, times[0])
    smc_state = smc.init(batch, y.device) if smc is not None else None
    for i in range(n):
        t_cur, t_next = times[i], times[i + 1]
        if smc is not None:
            state, smc_state = smc.step(state, t_cur, model, smc_state, mu=mu, generator=generator)
        state = solver.step(state, t_cur, t_next, model, i=i, n=n, noise=noise_fn)
        if xt_hook is not None:
            x = state.x if mu is None else state.x + mu
            x = xt_hook(x, t_next, noise_fn)
            state = state.replace(x=x if mu is None else x - mu)
        if callback is not None:
            callback(i, n, t_next, state)
    y = model(state.x, times[-1]) if denoise_final else state.x
    if smc is not None:
        state, y = smc.finish(state, y, smc_state, mu=mu, generator=generator)
    x = (y if mu is None else y + mu).to(out_dtype)
    return (x, state) if return_state else x


__all__ = ["NoiseSource", "sample"]
