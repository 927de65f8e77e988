"""The solver protocol: explicit state dataclasses, pure steps, and the solver registry.

A solver never keeps hidden counters or history buffers (the weak spot of diffusers' stateful
``scheduler.step``). Everything a step needs is in its ``State``: batch-leading tensors, so
``state.index(idx)`` reindexes particles (SMC resampling) together with their multistep history.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Protocol, TypeVar, runtime_checkable

import torch
from torch import Tensor

from polydiff.core.errors import InputError
from polydiff.core.utils import append_dims, expand_like

Noise = Callable[[Tensor], Tensor]
"""``noise(like)`` returns standard normal noise shaped like ``like`` (user generator or list)."""

S = TypeVar("S", bound="State")


def _index(value: Any, idx: Tensor) -> Any:
    # Tensors with a batch dimension are reindexed; 0-dim tensors (a time shared by the whole
    # batch) and Python values are shared by every particle and kept as they are.
    if isinstance(value, Tensor):
        return value[idx] if value.ndim > 0 else value
    if isinstance(value, tuple):
        return tuple(_index(v, idx) for v in value)
    if isinstance(value, list):
        return [_index(v, idx) for v in value]
    return value


@dataclasses.dataclass(frozen=True)
class State:
    """Solver state at the current time. Subclasses add history fields (tensors or tuples of them).

    Every tensor with ``ndim > 0`` must be batch-leading, so that :meth:`index` can reindex it.
    """

    x: Tensor

    def index(self: S, idx: Tensor) -> S:
        """Reindex every batch-leading tensor field along dim 0 (e.g. SMC resampling)."""
        changes = {f.name: _index(getattr(self, f.name), idx) for f in dataclasses.fields(self)}
        return dataclasses.replace(self, **changes)

    def replace(self: S, **changes: Any) -> S:
        return dataclasses.replace(self, **changes)


def per_step_coefficients(
    path: Any,
    t: Tensor,
    t_next: Tensor,
    fn: Callable[..., tuple[Tensor, ...]],
    dtype: torch.dtype | None = None,
) -> tuple[Tensor, ...]:
    """The scalar coefficients ``fn(path, t, t_next)`` of one step, cast to ``dtype`` if given
    (for coefficients that only ever multiply x: casting first gives the same values).

    ``fn`` must be elementwise in time (it gets 0-dim, [B], [B, L] or, stacked over the steps of a
    grid, [n, ...] times). Inside ``sample`` the path tabulates them for the whole grid in one
    vectorised call, so a step costs a lookup instead of a chain of tiny ops; anywhere else (a
    direct ``step`` call, torch.compile) this is just ``fn(path, t, t_next)``.
    """
    table = getattr(path, "step_table", None)
    if table is not None:
        return table(fn, t, t_next, dtype)
    coefficients = fn(path, t, t_next)
    return coefficients if dtype is None else tuple(c.to(dtype) for c in coefficients)


def paused_mask(t_cur: Tensor, t_next: Tensor) -> Tensor | None:
    """Where a per-sample / per-position time does not move over the step (a paused position:
    clean context, a streaming buffer's waiting block); ``None`` for a time shared by the batch,
    which always moves (``make_grid`` checks it), so the solvers keep their plain path there."""
    if t_cur.ndim == 0 and t_next.ndim == 0:
        return None
    return t_next == t_cur


def hold(paused: Tensor | None, old: Any, new: Any) -> Any:
    """``new`` where the time moved and exactly ``old`` where it is paused (a zero step is the
    identity); tensors or tuples of them (multistep history: a paused position pushes nothing)."""
    if paused is None:
        return new
    if isinstance(new, tuple):
        return tuple(hold(paused, o, v) for o, v in zip(old, new))
    return torch.where(append_dims(paused, new.ndim), old, new)


def advance(state: S, x_next: Tensor, t_cur: Tensor, t_next: Tensor) -> S:
    """``state`` moved to ``x_next``, except where a position's time does not move (there x
    stays exactly as it was)."""
    return state.replace(x=hold(paused_mask(t_cur, t_next), state.x, x_next))


def select(mask: Tensor, if_true: Tensor, if_false: Tensor) -> Tensor:
    """``torch.where`` with a per-sample / per-position ``mask`` broadcast over trailing dims."""
    return torch.where(append_dims(mask, if_true.ndim), if_true, if_false)


@runtime_checkable
class Solver(Protocol):
    """What the sampling driver needs from a solver.

    ``step`` advances ``state`` from ``t_cur`` to ``t_next``; ``i`` and ``n`` are Python ints (step
    index, number of steps) used for warm-up / final-step order policies, never tensors. With a
    per-sample / per-position time, multistep states also count each position's valid history
    (``n_hist``, not pushed while paused) and each position takes the lower of the policy's order
    and its own count + 1, chosen with ``torch.where``; so ``i`` need only bound the steps taken
    since ``init`` (a streaming buffer passes its running step count). ``model``
    is the prediction function returned by :meth:`wrap_model` (for continuous paths: a
    :class:`polydiff.core.param.Denoiser`, ``model(x, t) -> x0``, carrying ``model.path``).
    """

    nfe_per_step: int

    def init(self, x: Tensor, t: Tensor) -> State: ...

    def step(
        self,
        state: State,
        t_cur: Tensor,
        t_next: Tensor,
        model: Any,
        *,
        i: int,
        n: int,
        noise: Noise,
    ) -> State: ...


class SolverBase:
    """Convenience base: the default ``init`` (no history) and the continuous model wrapper.

    Solvers of other processes (discrete, Bayesian flow) override :meth:`wrap_model` to turn the
    user's ``model_fn`` into whatever their ``step`` consumes.
    """

    nfe_per_step: int = 1
    stochastic: bool = False  # draws noise (SMC needs a stochastic solver to diversify particles)
    # True if the solver divides by alpha (sigma/alpha-space methods): the driver then refuses
    # grids that start where alpha = 0 (e.g. flow at t = 1)
    needs_finite_log_snr: bool = False
    # True if a position whose time does not change over a step is left exactly unchanged (no
    # noise, no corrector move, no history pushed), so per-sample / per-position grids may pause
    # positions (block-wise decoding, clean context, streaming buffers)
    allows_paused_times: bool = False

    def init(self, x: Tensor, t: Tensor) -> State:
        return State(x=x)

    def wrap_model(
        self, model_fn: Callable, path: Any, prediction: str, *, mu: Tensor | None = None
    ) -> Any:
        from polydiff.core.param import Denoiser

        return Denoiser(model_fn, path, prediction, mu=mu)

    # ``step`` is the subclass's (its signature: :class:`Solver`)

    def _path(self, model: Any) -> Any:
        """The path to run on: the wrapped model's, else the solver's own ``path``, checked to be
        a ``path_type`` (solvers that declare one: discrete, Bayesian flow)."""
        path = getattr(model, "path", None) or self.path
        if not isinstance(path, self.path_type):
            raise ValueError(
                f"{type(self).__name__} needs a {self.path_type.__name__} (solver path= or "
                f"model.path), got {type(path).__name__}"
            )
        return path

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"


_REGISTRY: dict[str, Callable[..., Any]] = {}
_PATH_TYPES: dict[str, type | None] = {}  # name -> the path type the solver declares


def register_solver(name: str, **defaults: Any) -> Callable:
    """Class decorator (usable several times) registering a solver factory under ``name``.

    ``defaults`` are keyword arguments bound for this name, e.g.
    ``@register_solver("dpmpp_3m", order=3)``.
    """

    def decorate(factory: Callable) -> Callable:
        if name in _REGISTRY:
            raise ValueError(f"solver name {name!r} is already registered")
        _REGISTRY[name] = lambda **kw: factory(**{**defaults, **kw})
        _PATH_TYPES[name] = getattr(factory, "path_type", None)
        return factory

    return decorate


# modules of polydiff-core that register solvers of other processes; imported on first lookup,
# so `import polydiff.core` stays light and a config can still name any solver
_BUILTIN_SOLVER_MODULES = ("polydiff.core.discrete", "polydiff.core.bfn", "polydiff.core.torus")
_builtins_loaded = False


def _load_builtin_solvers() -> None:
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True
    import importlib

    for module in _BUILTIN_SOLVER_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:  # a module not shipped in this build
            if err.name != module:
                raise


def solvers_for(path: Any) -> list[str]:
    """The registered solvers that declare a path type ``path`` is (discrete, Bayesian flow);
    continuous solvers declare none and take any affine path."""
    _load_builtin_solvers()
    return sorted(n for n, t in _PATH_TYPES.items() if t is not None and isinstance(path, t))


def check_solver(name: str, path: Any, option: str = "solver") -> None:
    """Refuse (InputError naming ``option``) a solver name that is unknown or built for another
    kind of path: a discrete or Bayesian-flow solver on an affine path, or the reverse."""
    _load_builtin_solvers()
    if name not in _REGISTRY:
        raise InputError(f"{option}: unknown solver {name!r}; known: {', '.join(list_solvers())}")
    declared, fitting = _PATH_TYPES[name], solvers_for(path)
    if (declared is None and not fitting) or (declared is not None and isinstance(path, declared)):
        return
    if not fitting:
        fitting = sorted(n for n, t in _PATH_TYPES.items() if t is None)
    kind = "a continuous (affine) path" if declared is None else f"a {declared.__name__}"
    raise InputError(
        f"{option}: solver {name!r} samples {kind}, not a {type(path).__name__}; "
        f"use one of {', '.join(fitting)}"
    )


def get_solver(name: str | Any, **kwargs: Any) -> Any:
    """Build a registered solver by name (solver objects are passed through unchanged)."""
    if not isinstance(name, str):
        if kwargs:
            raise ValueError("solver keyword arguments need a solver name, not a solver object")
        return name
    if name not in _REGISTRY:
        _load_builtin_solvers()
    if name not in _REGISTRY:
        raise ValueError(f"unknown solver {name!r}; known solvers: {', '.join(list_solvers())}")
    try:
        return _REGISTRY[name](**kwargs)
    except TypeError as err:  # an option this solver does not take
        raise InputError(f"solver {name!r}: {err}") from None


def list_solvers() -> list[str]:
    """Names of every registered solver (continuous, discrete, Bayesian flow, torus), sorted."""
    _load_builtin_solvers()
    return sorted(_REGISTRY)


__all__ = [
    "Noise",
    "Solver",
    "SolverBase",
    "State",
    "advance",
    "check_solver",
    "expand_like",
    "get_solver",
    "hold",
    "list_solvers",
    "paused_mask",
    "per_step_coefficients",
    "register_solver",
    "select",
    "solvers_for",
]
