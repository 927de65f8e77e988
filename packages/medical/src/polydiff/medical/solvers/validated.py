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
VALIDATED: dict[str, dict[str, dict[str, Any]]] = {
    "sparse_view": {
        "tv_admm": {"lam": 1e-4},
        "dds": {"persistent_split": True},
        "dds_noisy": {"gamma": None},
        "dps": {"zeta": 2.0},
    },
    "limited_angle": {
        "tv_admm": {"lam": 2.5e-5},
        "dds": {"persistent_split": True},
        "dds_noisy": {"gamma": None},
        "dps": {"zeta": 2.0},
    },
    "mri": {
        "tv_admm": {"lam": 1.6e-3},
        "dds": {"persistent_split": False},
        "dds_noisy": {"gamma": None},  # 10 won with the kept split (21.8 vs 20.6 dB)
        "dps": {"zeta": 8.0},
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


def validated_params(method: str, op: LinearOperator | str, noisy: bool = False) -> dict[str, Any]:
    """The validated parameters of ``method`` (``tv_admm``, ``dds``, ``dps``, ``red_diff``,
    ``diffusion_mbir``) for the modality of ``op`` (an operator or a modality name), to pass
    as keyword arguments over the defaults; ``noisy=True`` adds DDS's proximal ``gamma`` picked
    on noisy data (``None``: hard consistency)."""
    name = op if isinstance(op, str) else modality(op)
    if name not in VALIDATED:
        raise ValueError(f"modality {name!r}: choose one of {', '.join(MODALITIES)}")
    if method not in ("tv_admm", "dds", "dps", "red_diff", "diffusion_mbir"):
        raise ValueError(f"method {method!r} has no validated parameters")
    params = dict(VALIDATED[name].get(method, {}))
    if method == "dds" and noisy:
        params.update(VALIDATED[name]["dds_noisy"])
    return params


__all__ = ["MODALITIES", "VALIDATED", "modality", "validated_params"]
