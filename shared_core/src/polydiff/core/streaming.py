"""Streaming denoising with a rolling buffer of positions at staggered noise levels.

    buf = RollingBuffer(model_fn, path=VPLinear(), window=8, shape=(D,), batch=B, solver="ddim")
    frames = buf.stream(100)  # [B, 100, D], one model call per frame after the warm-up

The buffer holds ``window`` positions along dim 1, the front one the least noisy. Each
:meth:`RollingBuffer.step` denoises every position one level down the grid with one solver step
(one model call on the whole buffer), pops the front position once it is clean and pushes fresh
noise at the back: the sliding window of Rolling Diffusion (Ruhe et al. 2024, "Rolling Diffusion
Models", Sec. 3, with one position per level) and the pyramid schedule of Diffusion Forcing (Chen
et al. 2024, "Diffusion Forcing: Next-token Prediction Meets Full-Sequence Diffusion").
At the start the buffer is all noise and position k waits (a paused time) for k steps, so every
position walks the same grid t_0 > ... > t_W; the model sees a time per position, [B, window].
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from polydiff.core.conditioning import bind_condition
from polydiff.core.grids import make_grid
from polydiff.core.paths import AffinePath
from polydiff.core.sample import NoiseSource
from polydiff.core.solvers.base import State, get_solver


def _shift(old: Any, fresh: Any) -> Any:
    """Drop the front position of a per-position state field and append the fresh back one;
    values without a position dim (None, Python values) are kept."""
    if isinstance(old, tuple):
        return tuple(_shift(o, f) for o, f in zip(old, fresh))
    if isinstance(old, Tensor) and old.ndim >= 2:
        return torch.cat([old[:, 1:], fresh[:, -1:]], 1)
    return old


class RollingBuffer:
    """A window of positions at staggered noise levels, denoised one level per step.

    Args:
        model_fn: ``model_fn(x, t)`` (``model_fn(x, t, cond)`` with ``cond``) on the whole buffer
            x [batch, window, *shape] with a time per position t [batch, window].
        path: an affine path; ``solver``: any of its solvers (every continuous solver allows
            paused times); ``prediction``: what ``model_fn`` returns.
        window: W, the number of positions (and of levels: each position takes W steps).
        shape: one position's shape; ``batch``: the number of independent streams.
        grid: a grid name or W + 1 times (1-D, decreasing) that every position walks.
        x_init: the starting buffer (default: the prior at t_start); ``generator`` / ``noise``:
            the source of fresh positions and of the solver's noise.

    A solver step gets the running step count as ``i`` (so multistep solvers warm up per
    position from their own history) and a step total that never ends, so final-step policies
    (``lower_order_final``, an SDE sampler's noise-free last step, Heun's ``final_euler``) are
    not applied: a popped position equals the non-streaming solve on the same grid with them off.
    """

    def __init__(
        self,
        model_fn: Callable[..., Tensor],
        *,
        path: Any,
        window: int,
        shape: tuple[int, ...],
        batch: int = 1,
        solver: str | Any = "ddim",
        prediction: str = "eps",
        grid: str | Tensor = "uniform",
        t_start: float | None = None,
        t_end: float | None = None,
        cond: Any = None,
        solver_kwargs: dict | None = None,
        x_init: Tensor | None = None,
        generator: torch.Generator | None = None,
        noise: Callable[[Tensor], Tensor] | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        if not isinstance(window, int) or window < 1:
            raise ValueError(f"rolling buffer: window must be a positive int, got {window!r}")
        if not isinstance(batch, int) or batch < 1:
            raise ValueError(f"rolling buffer: batch must be a positive int, got {batch!r}")
        if not isinstance(path, AffinePath):
            raise ValueError(
                f"rolling buffer: path must be an affine path, got {type(path).__name__}"
            )
        shape = tuple(shape)
        if not all(isinstance(d, int) and d > 0 for d in shape):
            raise ValueError(f"rolling buffer: shape must be positive ints, got {shape}")
        self.solver = get_solver(solver, **(solver_kwargs or {}))
        if not getattr(self.solver, "allows_paused_times", False):
            raise ValueError(
                f"rolling buffer: solver {self.solver!r} cannot hold paused positions "
                "(allows_paused_times is False)"
            )
        bounds = {"t_start": t_start, "t_end": t_end} if isinstance(grid, str) else {}
        levels = make_grid(grid, window, path, **bounds)
        if levels.shape != (window + 1,):
            raise ValueError(
                f"rolling buffer: the grid must hold window + 1 = {window + 1} times (1-D), "
                f"got shape {tuple(levels.shape)}"
            )
        alpha_zero = bool(path.log_snr(levels[0]) == -torch.inf)
        if alpha_zero and getattr(self.solver, "needs_finite_log_snr", False):
            raise ValueError(
                f"rolling buffer: solver {self.solver!r} needs alpha > 0 at the first time"
            )
        self.path, self.window, self.batch, self.shape = path, window, batch, shape
        self.noise = noise if noise is not None else NoiseSource(generator)
        like = torch.empty(batch, window, *shape, dtype=dtype, device=device)
        self.levels = levels.to(like.device)
        if x_init is None:
            x_init = self._prior(like)
        elif x_init.shape != like.shape:
            raise ValueError(
                f"rolling buffer: x_init has shape {tuple(x_init.shape)}, expected "
                f"{tuple(like.shape)} (batch, window, *shape)"
            )
        self.model = self.solver.wrap_model(bind_condition(model_fn, cond), path, prediction)
        self.steps = 0  # solver steps taken
        self.popped = 0  # positions returned
        self.state: State = self.solver.init(x_init.to(like), self._times()[0])

    def _prior(self, like: Tensor) -> Tensor:
        return float(self.path.sigma(self.levels[0])) * self.noise(like)

    def _times(self) -> tuple[Tensor, Tensor]:
        """(t_cur, t_next) of every position [batch, window] at the next step. Slot k holds stream
        position popped + k, which entered (started moving) at step popped + k: it has taken
        ``entered`` steps and moves one level; one that has not entered waits at t_0."""
        slots = torch.arange(self.window, device=self.levels.device)
        entered = self.steps - self.popped - slots
        level = entered.clamp(min=0)
        t_cur, t_next = self.levels[level], self.levels[level + (entered >= 0).long()]
        return tuple(t.expand(self.batch, -1).contiguous() for t in (t_cur, t_next))

    @property
    def x(self) -> Tensor:
        """The buffer [batch, window, *shape], front (least noisy) first."""
        return self.state.x

    def step(self, fresh: Tensor | None = None) -> Tensor | None:
        """One solver step on the whole buffer; returns the clean front position [batch, *shape]
        once it reaches the last time (else None, during the first window - 1 steps) and then
        pushes ``fresh`` (default: drawn from the prior) at the back."""
        t_cur, t_next = self._times()
        n = self.steps + self.window + 1  # never reached: no final-step policy
        self.state = self.solver.step(
            self.state, t_cur, t_next, self.model, i=self.steps, n=n, noise=self.noise
        )
        self.steps += 1
        if self.steps - self.popped < self.window:
            return None
        out = self.state.x[:, 0]
        like = out.unsqueeze(1)
        if fresh is None:
            fresh = self._prior(like)[:, 0]
        elif fresh.shape != out.shape:
            raise ValueError(
                f"rolling buffer: fresh has shape {tuple(fresh.shape)}, expected {tuple(out.shape)}"
            )
        x = torch.cat([self.state.x[:, 1:], fresh.to(out).unsqueeze(1)], 1)
        self.popped += 1
        new = self.solver.init(x, self._times()[0])
        fields = {f.name: getattr(self.state, f.name) for f in dataclasses.fields(self.state)}
        self.state = self.state.replace(
            **{k: _shift(v, getattr(new, k)) for k, v in fields.items() if k != "x"}, x=x
        )
        return out

    def stream(self, count: int) -> Tensor:
        """Step until ``count`` more positions are popped; returns them [batch, count, *shape]."""
        if not isinstance(count, int) or count < 1:
            raise ValueError(f"rolling buffer: count must be a positive int, got {count!r}")
        out: list[Tensor] = []
        while len(out) < count:
            y = self.step()
            if y is not None:
                out.append(y)
        return torch.stack(out, 1)


__all__ = ["RollingBuffer"]
