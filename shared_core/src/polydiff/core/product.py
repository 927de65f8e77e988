"""Structured samples: a product process that steps every field with its own path and solver
from one model call per step.

A structured sample is a plain dict of batch-leading tensors (a crystal: lattice, fractional
coordinates, atom types; a planner: states and actions). ``sample`` takes it directly:

    x = sample(
        model_fn,                                   # model_fn({"a": x_a, "b": x_b}, t) -> dict
        {"a": x_a_init, "b": x_b_init},
        path={"a": VPLinear(), "b": MaskedDiffusion(...)},
        solver={"a": "dpmpp_2m", "b": "mdlm"},
        prediction={"a": "eps", "b": "logits"},
        steps=50,
        mask={"b": present},                        # entries of b outside the mask stay as given
    )

Every field's solver sees an ordinary model of its own field (its prediction of the one joint
network call of the step), so any single-evaluation solver works unchanged, continuous or
discrete. Plain dicts keep ``torch.compile(fullgraph=True)`` of the whole loop and SMC
reindexing (``state.index``) working (docs/architecture.md says why no pytree library is used).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor

from polydiff.core.solvers.base import SolverBase, State, get_solver, select

__all__ = ["ProductModel", "ProductSolver", "ProductState", "product_paths"]


@dataclasses.dataclass(frozen=True)
class ProductState(State):
    """``x``: the dict of field samples; ``fields``: each field solver's own state; ``mask``:
    by field, True where the field is sampled (None: everywhere)."""

    fields: dict[str, State] = dataclasses.field(default_factory=dict)
    mask: dict[str, Tensor] | None = None

    def index(self, idx: Tensor) -> ProductState:
        """Reindex every field's state (histories included) and the masks (SMC resampling)."""
        fields = {k: f.index(idx) for k, f in self.fields.items()}
        mask = None if self.mask is None else {k: m[idx] for k, m in self.mask.items()}
        return ProductState(x={k: f.x for k, f in fields.items()}, fields=fields, mask=mask)

    def replace(self, **changes: Any) -> ProductState:
        """A new ``x`` (e.g. from a hook) reaches the field states too."""
        if "x" in changes and "fields" not in changes:
            x = changes["x"]
            changes["fields"] = {k: f.replace(x=x[k]) for k, f in self.fields.items()}
        return dataclasses.replace(self, **changes)


def product_paths(path: Any, x: dict[str, Tensor]) -> dict[str, Any]:
    """The per-field paths, checked against the fields of the sample."""
    if not isinstance(path, dict) or set(path) != set(x):
        given = sorted(path) if isinstance(path, dict) else type(path).__name__
        raise ValueError(f"structured sample: path must be a dict with the fields {sorted(x)}, "
                         f"got {given}")  # fmt: skip
    return path


class _Field:
    """One field's model as its solver sees it: its share of the step's joint prediction."""

    def __init__(self, joint: ProductModel, name: str) -> None:
        self.joint, self.name = joint, name

    def __call__(self, x: Tensor, t: Tensor, *extra: Tensor) -> Any:
        joint = self.joint
        if extra:
            raise ValueError(
                f"structured sample: field {self.name!r}: its solver passes extra model inputs, "
                "which a joint model call does not take"
            )
        if joint.current is None or x is not joint.current[self.name]:
            raise ValueError(
                f"structured sample: field {self.name!r}: its solver evaluated the model away "
                "from the current sample (a multi-stage solver or no-update caching); use a "
                "single-evaluation solver for every field"
            )
        if joint.raw is None:  # the step's one network call, shared by every field
            joint.raw = joint.model_fn(joint.current, joint.model_time(t))
        return joint.raw[self.name]


class _Cached:
    """A field's wrapped model that returns a primed value (SMC's potential evaluation) and
    remembers its last prediction (``ProductModel.last``)."""

    def __init__(self, joint: ProductModel, name: str, model: Any) -> None:
        self.joint, self.name, self.model = joint, name, model  # path etc.: __getattr__

    def __call__(self, x: Tensor, t: Tensor, *extra: Tensor) -> Any:
        primed = self.joint.primed
        if primed is not None and x is primed[0][self.name] and t is primed[1]:
            out = primed[2][self.name]
        else:
            out = self.model(x, t, *extra)
        self.joint.last[self.name] = out
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


class ProductModel:
    """The joint ``model_fn(x: dict, t) -> dict`` split into per-field models
    (``field_models[name]``: what the field's solver calls)."""

    def __init__(self, model_fn: Any, solvers: dict[str, Any], path: dict, prediction: dict):
        self.model_fn, self.path = model_fn, path
        self.current: dict[str, Tensor] | None = None
        self.raw: dict[str, Any] | None = None
        self.primed: tuple | None = None
        self.last: dict[str, Any] = {}
        self.time_dtype: torch.dtype | None = None
        self.field_models = {
            k: s.wrap_model(_Field(self, k), path[k], prediction[k]) for k, s in solvers.items()
        }
        self.cached = {k: _Cached(self, k, m) for k, m in self.field_models.items()}
        self.step_models = self.cached  # what a step calls: see record()

    def record(self, needed: bool) -> None:
        """Whether steps record ``last`` and take SMC's primed value (after-step hooks, SMC);
        without them a step calls the field models directly (less per-step overhead)."""
        self.step_models = self.cached if needed else self.field_models

    def model_time(self, t: Tensor) -> Tensor:
        """The network's time: [B] in the dtype of the first floating field."""
        if self.time_dtype is None:  # the fields' dtypes are fixed for a run: look up once
            fields = self.current.values()
            self.time_dtype = next((v.dtype for v in fields if v.is_floating_point()), None)
            self.time_dtype = self.time_dtype or torch.float32
            self.batch = next(iter(fields)).shape[0]
        t = t.expand(self.batch) if t.ndim == 0 else t
        return t if t.dtype == self.time_dtype else t.to(self.time_dtype)

    def begin(self, x: dict[str, Tensor]) -> None:
        """A new step at the sample ``x``: the next field call makes the joint network call."""
        self.current, self.raw, self.last = x, None, {}

    def prime(self, x: dict[str, Tensor], t: Tensor, value: dict[str, Any]) -> None:
        self.primed = (x, t, value)

    def __call__(self, x: dict[str, Tensor], t: Tensor) -> dict[str, Any]:
        """Every field's prediction at ``x`` (SMC potentials, ``denoise_final``)."""
        self.begin(x)
        return {k: m(x[k], t) for k, m in self.cached.items()}


class ProductSolver(SolverBase):
    """Steps each field of a structured sample with its own registered solver, from one joint
    model call per step (see the module docstring). Every field solver must take a single model
    evaluation per step at its current sample (DDIM, DPM-Solver++ / UniPC / DEIS multistep,
    Euler, Euler-Maruyama, SDE-DPM++, discrete ancestral / first-hitting / ReMDM, Bayesian-flow
    continuous and discrete updates)."""

    def __init__(self, solvers: dict[str, Any]) -> None:
        if not solvers:
            raise ValueError("a product needs at least one field")
        self.solvers = dict(solvers)
        for name, s in self.solvers.items():
            if getattr(s, "nfe_per_step", 1) != 1:
                raise ValueError(
                    f"structured sample: field {name!r}: solver {s!r} takes {s.nfe_per_step} "
                    "model evaluations per step; a product needs single-evaluation solvers"
                )
        fields = self.solvers.values()
        self.stochastic = any(getattr(s, "stochastic", False) for s in fields)
        self.allows_paused_times = all(getattr(s, "allows_paused_times", False) for s in fields)
        self.needs_finite_log_snr = False  # checked by each field's solver on its own path

    @classmethod
    def build(cls, solver: Any, x: dict[str, Tensor], kwargs: dict | None) -> ProductSolver:
        """From ``solver`` (a dict of names / solver objects by field, or a ProductSolver) and
        ``solver_kwargs`` (a dict of keyword dicts by field)."""
        if isinstance(solver, ProductSolver):
            return solver
        if not isinstance(solver, dict) or set(solver) != set(x):
            given = sorted(solver) if isinstance(solver, dict) else repr(solver)
            raise ValueError(
                f"structured sample: solver must be a dict with the fields {sorted(x)}, got {given}"
            )
        kwargs = kwargs or {}
        unknown = sorted(set(kwargs) - set(x))
        if unknown:
            raise ValueError(f"structured sample: solver_kwargs for unknown fields {unknown}")
        return cls({k: get_solver(v, **kwargs.get(k, {})) for k, v in solver.items()})

    def wrap_model(self, model_fn, path, prediction, *, mu=None) -> ProductModel:
        if mu is not None:
            raise ValueError("structured samples take no mean-reverting condition mu")
        return ProductModel(model_fn, self.solvers, path, prediction)

    def init(self, x: dict[str, Tensor], t: Tensor) -> ProductState:
        fields = {k: s.init(x[k], t) for k, s in self.solvers.items()}
        return ProductState(x={k: f.x for k, f in fields.items()}, fields=fields)

    def step(self, state, t_cur, t_next, model, *, i: int, n: int, noise) -> ProductState:
        model.begin(state.x)
        fields = {
            k: s.step(state.fields[k], t_cur, t_next, model.step_models[k], i=i, n=n, noise=noise)
            for k, s in self.solvers.items()
        }
        for k, m in (state.mask or {}).items():  # entries outside the mask keep their values
            fields[k] = fields[k].replace(x=select(m, fields[k].x, state.x[k]))
        return ProductState(x={k: f.x for k, f in fields.items()}, fields=fields, mask=state.mask)

    def __repr__(self) -> str:
        return f"ProductSolver({self.solvers!r})"
