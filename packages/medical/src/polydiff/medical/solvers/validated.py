"""Per-modality parameters validated by the benchmark (docs/benchmarks/medical.md).

Each method's penalties and step sizes were picked on a validation phantom (seed 900, 32^3,
the shipped phantom-32 prior; never the test phantom) separately for sparse-view CT (8
views), limited-angle CT (90 degrees, 30 views) and MRI (x4, uniform 1D mask), in the units
relative to ``||A||^2`` that every solver takes. Settings picked on CT do not carry over to
MRI: the session-3 DiffusionMBIR setting diverged there (3.45 dB), DDS needs its TV split
restarted at every step on MRI (kept on CT), DPS a 4x larger step and TV-ADMM a 64x larger TV
weight than on limited-angle CT.
"""

from __future__ import annotations

from typing import Any

from polydiff.medical.operators.base import LinearOperator
from polydiff.medical.operators.ct import FanBeamCT, LimitedAngleCT, ParallelBeamCT, RotateSumCT
from polydiff.medical.operators.mri import CartesianMRI

MODALITIES = ("sparse_view", "limited_angle", "mri")

# modality -> method -> parameters (relative to ||A||^2; 32^3 benchmark of session 4): what
# differs between modalities. RED-diff picked its defaults on every modality, DiffusionMBIR
# the same setting on every modality (now its default).
# TV-ADMM's rho / n_iter and DDS's CG steps and start are listed so that an option left at None
# resolves; they are the same on every modality of the phantom table.
_TV = {"rho": 4e-3, "n_iter": 100}
_DDS = {"n_cg": 5, "start": None, "t_start": 1.0}
VALIDATED: dict[str, dict[str, dict[str, Any]]] = {
    "sparse_view": {
        "tv_admm": {"lam": 1e-4, **_TV},
        "dds": {"persistent_split": True, **_DDS},
        "dds_noisy": {"gamma": None},
        "dps": {"zeta": 2.0},
    },
    "limited_angle": {
        "tv_admm": {"lam": 2.5e-5, **_TV},
        "dds": {"persistent_split": True, **_DDS},
        "dds_noisy": {"gamma": None},
        "dps": {"zeta": 2.0},
    },
    "mri": {
        "tv_admm": {"lam": 1.6e-3, **_TV},
        "dds": {"persistent_split": False, **_DDS},
        "dds_noisy": {"gamma": None},  # 10 won with the kept split (21.8 vs 20.6 dB)
        "dps": {"zeta": 8.0},
    },
}

# Real anatomy (``anatomy=True``): the picks of the real-anatomy benchmark (`benchmarks/run.py
# medical --real`, docs/benchmarks/medical.md), made on the tuning subject (nibabel's
# example4d EPI head at 64^3, anatomy-64 prior, never the test subject) for sparse-view CT
# (8 views) and MRI (x4). They go over the phantom table: real heads want a TV weight 2x
# (CT) to 16x (MRI) smaller than phantoms, and DDS gains 1.9 dB on CT from 20 CG steps and a
# warm start from TV-ADMM entered at t = 0.2 (CCDF). Limited-angle CT was not tuned on real
# data and keeps the phantom picks.
VALIDATED_ANATOMY: dict[str, dict[str, dict[str, Any]]] = {
    "sparse_view": {
        "tv_admm": {"lam": 5e-5, "rho": 1.6e-2},
        "dds": {"n_cg": 20, "start": "tv_admm", "t_start": 0.2},
    },
    "mri": {
        "tv_admm": {"lam": 1e-4, "n_iter": 300},
        "dds": {"n_cg": 20, "start": "tv_admm", "t_start": 0.2},
    },
}


def modality(op: LinearOperator) -> str:
    """The modality whose validated parameters fit ``op``: ``"limited_angle"`` for
    :class:`LimitedAngleCT`, ``"sparse_view"`` for the other CT operators (parallel, fan,
    rotate-sum), ``"mri"`` for :class:`CartesianMRI`."""
    if isinstance(op, LimitedAngleCT):
        return "limited_angle"
    if isinstance(op, ParallelBeamCT | FanBeamCT | RotateSumCT):
        return "sparse_view"
    if isinstance(op, CartesianMRI):
        return "mri"
    raise ValueError(f"no validated parameters for {type(op).__name__} (CT or CartesianMRI only)")


def validated_params(
    method: str, op: LinearOperator | str, noisy: bool = False, anatomy: bool = False
) -> dict[str, Any]:
    """The validated parameters of ``method`` (``tv_admm``, ``dds``, ``dps``, ``red_diff``,
    ``diffusion_mbir``) for the modality of ``op`` (an operator or a modality name), to pass
    as keyword arguments over the defaults; ``noisy=True`` adds DDS's proximal ``gamma`` picked
    on noisy data (``None``: hard consistency); ``anatomy=True`` takes the picks made on a real
    head where there are some (:data:`VALIDATED_ANATOMY`), the phantom ones elsewhere."""
    name = op if isinstance(op, str) else modality(op)
    if name not in VALIDATED:
        raise ValueError(f"modality {name!r}: choose one of {', '.join(MODALITIES)}")
    if method not in ("tv_admm", "dds", "dps", "red_diff", "diffusion_mbir"):
        raise ValueError(f"method {method!r} has no validated parameters")
    params = dict(VALIDATED[name].get(method, {}))
    if method == "dds" and noisy:
        params.update(VALIDATED[name]["dds_noisy"])
    if anatomy:
        params.update(VALIDATED_ANATOMY.get(name, {}).get(method, {}))
    return params


__all__ = ["MODALITIES", "VALIDATED", "VALIDATED_ANATOMY", "modality", "validated_params"]
