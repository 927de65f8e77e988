"""Diffusion reconstruction solvers: a 2D slice prior on a 3D volume, one file per method.

``prior = SlicePrior(model_fn, path, prediction="eps")`` wraps any ``model_fn(x, t)`` on slices
``(N, 1, H, W)``; ``dds(prior, op, y)`` (and ``dps``, ``red_diff``, ``diffusion_mbir``) return a
:class:`Reconstruction` with the volume ``x`` and the network evaluations ``nfe``. By name:
:func:`polydiff.medical.reconstruction.reconstruct` (every reconstruction, classical ones too).
"""

from polydiff.medical.solvers.common import ADMMTVz, Reconstruction, SlicePrior, operator_norm2
from polydiff.medical.solvers.dds import dds
from polydiff.medical.solvers.dps import dps
from polydiff.medical.solvers.mbir import diffusion_mbir
from polydiff.medical.solvers.reddiff import red_diff
from polydiff.medical.solvers.validated import modality, validated_params

__all__ = [
    "ADMMTVz",
    "Reconstruction",
    "SlicePrior",
    "dds",
    "diffusion_mbir",
    "dps",
    "modality",
    "operator_norm2",
    "red_diff",
    "validated_params",
]
