"""Named reconstructions: every method of ``polydiff medical reconstruct`` and the benchmark,
called by name with keyword options.

    prior = load_prior(shipped_prior_dir(image_size=32))
    rec = reconstruct("dds", prior, op, y, steps=10, generator=torch.Generator().manual_seed(0))
    rec.x, rec.nfe, rec.options  # the volume in [0, 1], network evaluations, options it ran with
    list_reconstructions()       # back_projection, adjoint, fbp, cg, tv_admm, dds, dps, ...

Penalties and step sizes (``lam``, ``rho``, ``zeta``, ``gamma``) are relative to ``||A||^2``
as in :mod:`polydiff.medical.solvers`; an option given as ``None`` takes the value validated
for the operator's modality (:func:`~polydiff.medical.solvers.validated_params`).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from polydiff.core.errors import InputError
from polydiff.core.io import nan_to_none
from polydiff.medical import baselines
from polydiff.medical.metrics import volume_metrics
from polydiff.medical.operators.base import LinearOperator
from polydiff.medical.operators.ct import FanBeamCT, ParallelBeamCT
from polydiff.medical.solvers import (
    SlicePrior,
    dds,
    diffusion_mbir,
    dps,
    operator_norm2,
    red_diff,
    validated_params,
)

# run(prior, op, y, generator, **options) -> (volume, NFE)
RunFn = Callable[..., tuple[Tensor, int]]


@dataclass(frozen=True)
class ReconstructionMethod:
    """A named reconstruction: ``run``, the function whose keywords are its options
    (``target``), the library defaults it runs with, and whether it needs a slice prior and
    fills ``None`` options with the modality's validated values."""

    name: str
    summary: str
    run: RunFn
    target: Callable[..., Any]
    defaults: dict[str, Any] = field(default_factory=dict)
    needs_prior: bool = False
    validated: bool = False

    def option_names(self) -> list[str]:
        """The target's keyword parameters, less those the registry passes or that take
        tensors (starting points)."""
        skip = {"generator", "op_norm2", "x0", "x_init"}
        params = inspect.signature(self.target).parameters.values()
        return sorted(p.name for p in params if p.default is not p.empty and p.name not in skip)


@dataclass
class NamedReconstruction:
    """A volume ``x`` in [0, 1] units, its network evaluations, the options it ran with
    (relative units, validated values filled in) and its wall time."""

    name: str
    x: Tensor
    nfe: int
    options: dict[str, Any]
    seconds: float

    def scores(self, gt: Tensor) -> dict[str, float]:
        """Volume PSNR and SSIM against ``gt`` (:func:`~polydiff.medical.metrics.volume_metrics`),
        seconds and NFE: a row of the benchmark's and the demo's tables."""
        m = volume_metrics(self.x.detach().float(), gt)
        return {"psnr": m.psnr, "ssim": m.ssim, "seconds": self.seconds, "nfe": self.nfe}


def metrics_json(x: Tensor, gt: Tensor, per_slice: bool = False) -> dict[str, Any]:
    """:func:`~polydiff.medical.metrics.volume_metrics` of ``x`` against ``gt`` as strict JSON
    (with ``per_slice``, every slice's scores along each axis; infinite scores, of slices equal
    to the truth, as None)."""
    m = volume_metrics(x.to(gt.dtype), gt)
    return nan_to_none({**m.as_dict(), **({"per_slice": m.per_slice} if per_slice else {})})


def scores_table(rows: dict[str, dict[str, float]]) -> str:
    """A markdown table of :meth:`NamedReconstruction.scores` by method."""
    lines = ["| method | PSNR (dB) | SSIM | seconds | NFE |", "|---|---|---|---|---|"]
    lines += [
        f"| {k} | {v['psnr']:.2f} | {v['ssim']:.3f} | {v['seconds']:.1f} | {v['nfe']} |"
        for k, v in rows.items()
    ]
    return "\n".join(lines)


_RECONSTRUCTIONS: dict[str, ReconstructionMethod] = {}


def register_reconstruction(method: ReconstructionMethod) -> ReconstructionMethod:
    if method.name in _RECONSTRUCTIONS:
        raise ValueError(f"reconstruction {method.name!r} is already registered")
    _RECONSTRUCTIONS[method.name] = method
    return method


def list_reconstructions(needs_prior: bool | None = None) -> list[str]:
    """The registered names in registration order (``needs_prior``: only those that do, or
    with ``False`` only the classical ones)."""
    return [
        name
        for name, m in _RECONSTRUCTIONS.items()
        if needs_prior is None or m.needs_prior == needs_prior
    ]


def reconstruction_method(name: str) -> ReconstructionMethod:
    if name not in _RECONSTRUCTIONS:
        raise ValueError(
            f"unknown reconstruction {name!r}; choose one of {', '.join(_RECONSTRUCTIONS)}"
        )
    return _RECONSTRUCTIONS[name]


# iteration counts among the methods' options, and the least each may be
_COUNTS = {"n_iter": 1, "steps": 1, "n_cg": 0, "final_cg": 0, "corrector_steps": 0}


def _check_counts(name: str, options: dict[str, Any]) -> None:
    """An InputError naming ``<method>.<option>`` for a count that is not an integer at least
    its minimum (``tv_admm.n_iter=-1`` would otherwise run no iteration and return the start)."""
    for key, least in _COUNTS.items():
        value = options.get(key)
        if key in options and (isinstance(value, bool) or not isinstance(value, int)
                               or value < least):  # fmt: skip
            raise InputError(f"{name}.{key} must be an integer >= {least}, got {value!r}")


def reconstruct(
    name: str,
    prior: SlicePrior | None,
    op: LinearOperator,
    y: Tensor,
    *,
    generator: torch.Generator | None = None,
    anatomy: bool = False,
    start_options: dict[str, Any] | None = None,
    **options: Any,
) -> NamedReconstruction:
    """Reconstruct the volume measured as ``y`` by ``op`` with the method ``name``
    (:func:`list_reconstructions`); ``prior`` is the slice prior of the diffusion methods
    (None for the classical ones), ``generator`` seeds their sampling, ``options`` go over the
    method's defaults (``None``: the value validated for the operator's modality, on a real head
    with ``anatomy=True``: :func:`~polydiff.medical.solvers.validated_params`).

    A ``start`` option that names another reconstruction (DDS's warm start from ``"tv_admm"``,
    Chung, Sim & Ye 2022, "Come-Closer-Diffuse-Faster"; the validated pick on real anatomy)
    runs that one first with ``start_options`` and starts from its volume; its seconds count in
    the result's. ``start="noise"`` starts from noise where the validated pick would not."""
    method = reconstruction_method(name)
    unknown = sorted(set(options) - set(method.option_names()))
    if unknown:
        raise ValueError(f"{name}: unknown options {unknown}; known: {method.option_names()}")
    if method.needs_prior and prior is None:
        raise ValueError(f"{name} needs a slice prior (load_prior)")
    options = _resolved(method, op, options, anatomy)
    first = options.get("start")
    if isinstance(first, str):
        warm = reconstruct(first, prior, op, y, anatomy=anatomy, **(start_options or {}))
        rec = reconstruct(name, prior, op, y, generator=generator, **{**options, "start": warm.x})
        rec.options["start"] = warm.name
        rec.seconds += warm.seconds
        return rec
    _check_counts(name, options)
    start = time.perf_counter()
    x, nfe = method.run(prior, op, y, generator, **options)
    return NamedReconstruction(name, x, nfe, options, time.perf_counter() - start)


def _resolved(
    method: ReconstructionMethod, op: LinearOperator, options: dict[str, Any], anatomy: bool
) -> dict[str, Any]:
    """``options`` over the method's defaults, with ``None`` values validated for ``op``."""
    options = {**method.defaults, **options}
    cold = options.get("start") == "noise"
    if cold and options.get("t_start") is None:
        options["t_start"] = 1.0  # the warm start's entry time means nothing from noise
    if method.validated and any(v is None for v in options.values()):
        picks = validated_params(method.name, op, anatomy=anatomy)
        options = {k: picks[k] if v is None and k in picks else v for k, v in options.items()}
    if cold:
        options["start"] = None
    return {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}


# ----------------------------------------------------------------------------- classical


def _fbp(prior: Any, op: LinearOperator, y: Tensor, generator: Any) -> tuple[Tensor, int]:
    if not isinstance(op, ParallelBeamCT | FanBeamCT):
        raise ValueError("fbp needs a parallel, limited_angle or fan CT operator")
    return baselines.fbp(op, y), 0


def _cg(prior: Any, op: LinearOperator, y: Tensor, generator: Any, **options: Any):
    return baselines.cg_least_squares(op, y, **options), 0


def _tv_admm(prior: Any, op: LinearOperator, y: Tensor, generator: Any, **options: Any):
    """3D TV-ADMM with ``lam`` and ``rho`` relative to ``||A||^2``, as the diffusion solvers'
    penalties."""
    norm2 = operator_norm2(op)
    absolute = {**options, "lam": options["lam"] * norm2, "rho": options["rho"] * norm2}
    return baselines.tv_admm(op, y, **absolute), 0


def _solver(solver: Callable[..., Any]) -> RunFn:
    def run(prior: SlicePrior, op: LinearOperator, y: Tensor, generator: Any, **options: Any):
        rec = solver(prior, op, y, generator=generator, **options)
        return rec.x, rec.nfe

    return run


for _method in (
    ReconstructionMethod(
        "back_projection",
        "A^T y scaled by its least-squares step length",
        lambda prior, op, y, generator: (baselines.back_projection(op, y), 0),
        baselines.back_projection,
    ),
    ReconstructionMethod(
        "adjoint",
        "A^H y: the zero-filled inverse FFT for MRI",
        lambda prior, op, y, generator: (op.adjoint(y), 0),
        LinearOperator.adjoint,
    ),
    ReconstructionMethod("fbp", "filtered back-projection (CT)", _fbp, baselines.fbp),
    ReconstructionMethod(
        "cg", "CG least squares, early stopped", _cg, baselines.cg_least_squares, {"n_iter": 30}
    ),
    ReconstructionMethod(
        "tv_admm",
        "3D anisotropic TV by ADMM",
        _tv_admm,
        baselines.tv_admm,
        {"lam": None, "rho": None, "n_iter": None, "n_cg": 5, "nonnegative": True},
        validated=True,
    ),
    *(
        ReconstructionMethod(
            solver.__name__,
            summary,
            _solver(solver),
            solver,
            defaults,
            needs_prior=True,
            validated=True,
        )
        for solver, summary, defaults in (
            (
                dds,
                "decomposed diffusion sampling (DDIM + CG + TV along z)",
                dict.fromkeys(("persistent_split", "n_cg", "start", "t_start")),  # validated
            ),
            (dps, "diffusion posterior sampling", {}),
            (red_diff, "RED-diff: variational regularisation by the prior", {}),
            (diffusion_mbir, "DiffusionMBIR: predictor-corrector + ADMM-TV along z", {}),
        )
    ),
):
    register_reconstruction(_method)


__all__ = [
    "NamedReconstruction",
    "ReconstructionMethod",
    "list_reconstructions",
    "metrics_json",
    "reconstruct",
    "reconstruction_method",
    "register_reconstruction",
    "scores_table",
]
