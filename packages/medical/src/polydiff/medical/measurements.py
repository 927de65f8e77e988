"""Simulated measurements: a ground truth, an operator, a noise model, and their files.

    truth = ground_truth(phantom_config=PhantomConfig(size=32))  # or ground_truth("head.nii")
    meas = simulate(truth, OperatorConfig("parallel", n_views=8), noise_std=0.01, seed=0)
    save_measurements("runs/sim8", meas)  # what `polydiff medical simulate` writes
    meas = load_measurements("runs/sim8")  # y, the rebuilt operator, the geometry

A folder holds ``measurements.safetensors`` (key ``y``; complex k-space stored as real pairs),
``geometry.json`` (the operator and its arguments, slice size, noise, seed, affine, intensity
scale, source) and ``ground_truth.nii.gz`` (the measured volume in its own units and affine).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from polydiff.core.errors import InputError
from polydiff.core.io import (
    atomic_save_safetensors,
    atomic_write_json,
    load_safetensors,
    read_json,
    safetensors_metadata,
)
from polydiff.core.method import Config
from polydiff.medical.data import Volume, load_nifti, normalize, phantom, save_nifti
from polydiff.medical.data.geometry import fit_volume
from polydiff.medical.data.intensity import IntensityScale
from polydiff.medical.data.phantoms import check_phantom_kind
from polydiff.medical.operators import OPERATORS, LinearOperator, make_operator

GEOMETRY = "geometry.json"
MEASUREMENTS = "measurements.safetensors"
GROUND_TRUTH = "ground_truth.nii.gz"
INTENSITY_MAPS = ("minmax", "percentile")


@dataclass
class OperatorConfig(Config):
    """A forward operator by ``kind`` (:data:`~polydiff.medical.operators.OPERATORS`) with the
    arguments of every kind; :meth:`kwargs` keeps those that ``kind`` uses."""

    kind: str = "parallel"
    n_views: int = 8  # CT
    angle_range_deg: float = 90  # limited_angle
    mask: str = "uniform1d"  # mri
    acceleration: float = 4  # mri
    seed: int = 0  # mri: the random mask's seed

    def __post_init__(self) -> None:
        if self.kind not in OPERATORS:
            raise ValueError(f"operator.kind={self.kind!r}: choose one of {', '.join(OPERATORS)}")
        if self.kind != "mri" and self.n_views < 1:
            raise ValueError(f"operator.n_views must be >= 1, got {self.n_views}")

    def kwargs(self) -> dict[str, Any]:
        """The :func:`~polydiff.medical.operators.make_operator` arguments of this kind."""
        if self.kind == "mri":
            return {"mask": self.mask, "acceleration": self.acceleration, "seed": self.seed}
        if self.kind == "limited_angle":
            return {"n_views": self.n_views, "angle_range_deg": self.angle_range_deg}
        return {"n_views": self.n_views}

    def build(self, image_size: tuple[int, int] | list[int]) -> LinearOperator:
        return build_operator(self.kind, image_size, self.kwargs())


def build_operator(
    kind: str, image_size: tuple[int, int] | list[int], kwargs: dict[str, Any]
) -> LinearOperator:
    """``make_operator`` with an error that names the operator and its arguments."""
    try:
        return make_operator(kind, tuple(image_size), **kwargs)
    except ValueError as err:
        raise ValueError(f"operator {kind} {kwargs}: {err}") from None


@dataclass
class PhantomConfig(Config):
    """A built-in volume: ``shepp_logan`` (randomised) or ``ellipsoids``, ``size``^3 voxels."""

    kind: str = "shepp_logan"
    size: int = 32
    seed: int = 1000  # held out from the priors' training seeds (0..63)

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 8:
            raise InputError(f"phantom.size must be an integer >= 8, got {self.size!r}")
        check_phantom_kind(self.kind, "phantom.kind")


@dataclass
class GroundTruth:
    """A volume to measure: ``volume`` in its own units with its affine, ``x01`` its [0, 1]
    version (what operators and priors see), ``scale`` the map back, ``source`` its name."""

    volume: Volume
    x01: Tensor
    scale: IntensityScale
    source: str


def ground_truth(
    input: str | Path | None = None,
    phantom_config: PhantomConfig | None = None,
    intensity: str = "minmax",
    fit: str = "none",
    shape: Sequence[int | None] = (None, None, None),
) -> GroundTruth:
    """A NIfTI volume mapped to [0, 1] by ``intensity`` (``minmax`` | ``percentile``, clipped
    to [0, 1]), or,
    with ``input=None``, the phantom of ``phantom_config`` (already in [0, 1]). A NIfTI volume
    is first brought to ``shape`` ``(D, H, W)`` (``None``: keep that axis) by ``fit``
    (:func:`polydiff.medical.data.geometry.fit_volume`: ``auto`` | ``none`` | ``crop_pad`` |
    ``resample``; the affine follows)."""
    if input is not None:
        if intensity not in INTENSITY_MAPS:
            raise ValueError(f"intensity={intensity!r}: choose minmax or percentile")
        volume = fit_volume(load_nifti(input), fit, shape)
        low, high = volume.data.min().item(), volume.data.max().item()
        if low == high:  # the intensity map would divide by zero
            what = "all zero" if high == 0 else f"constant ({high:g})"
            raise InputError(f"{input}: the volume is {what}: nothing to measure")
        # percentile: the outliers beyond the 0.5 / 99.5 percentiles saturate, as in the
        # prior's data; left above 1 they would meet the solvers' [0, 1] clamp unannounced
        x01, scale = normalize(volume.data, intensity, clip=intensity == "percentile")
        return GroundTruth(volume, x01, scale, str(input))
    ph = phantom_config or PhantomConfig()
    x = phantom(ph.kind, ph.size, ph.seed)
    source = f"phantom {ph.kind} size {ph.size} seed {ph.seed}"
    return GroundTruth(Volume(x, np.eye(4)), x.to(torch.float32), IntensityScale(0.0, 1.0), source)


def measure(
    op: LinearOperator, x: Tensor, noise_std: float = 0.0, *, relative: bool = False, seed: int = 0
) -> tuple[Tensor, float]:
    """The noise model: ``y = A x + std n`` with white Gaussian ``n`` (circular complex for
    k-space, :meth:`LinearOperator.noise_like`) drawn from ``Generator().manual_seed(seed)``,
    and the ``std`` used. ``relative=True``: ``std = noise_std`` times the RMS of the non-zero
    noiseless measurements (unsampled k-space is zero), the benchmark's noise."""
    if noise_std < 0:
        raise ValueError(f"noise_std must be >= 0, got {noise_std}")
    y = op.forward(x)
    if noise_std == 0:
        return y, 0.0
    std = noise_std * float(y[y.abs() > 0].abs().square().mean().sqrt()) if relative else noise_std
    return y + std * op.noise_like(y, torch.Generator().manual_seed(seed)), std


@dataclass
class Measurements:
    """Measurements ``y`` of a volume's slices by ``op``, the ``geometry`` that rebuilds the
    operator (and records noise, affine, intensity scale, source), and the ground truth in its
    own units when known."""

    y: Tensor
    op: LinearOperator
    geometry: dict[str, Any]
    truth: Volume | None = None

    @property
    def scale(self) -> IntensityScale:
        return IntensityScale(**self.geometry["scale"])

    @property
    def affine(self) -> np.ndarray:
        return np.asarray(self.geometry["affine"], dtype=np.float64)

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.geometry["image_size"])

    def to_volume(self, x01: Tensor) -> Volume:
        """A [0, 1] reconstruction as a volume in the input's units, with its affine."""
        return Volume(self.scale.inverse(x01.detach()), self.affine)


def simulate(
    truth: GroundTruth,
    operator: OperatorConfig,
    noise_std: float = 0.0,
    seed: int = 0,
    *,
    relative: bool = False,
) -> Measurements:
    """Measure ``truth.x01`` with ``operator`` and :func:`measure`'s noise."""
    image_size = list(truth.volume.data.shape[-2:])
    op = operator.build(image_size)
    y, _ = measure(op, truth.x01, noise_std, relative=relative, seed=seed)
    geometry = {
        "operator": {"kind": operator.kind, **operator.kwargs()},
        "image_size": image_size,
        "volume_shape": list(truth.volume.data.shape),
        "noise_std": float(noise_std),
        "seed": int(seed),
        "affine": truth.volume.affine.tolist(),
        "scale": {"low": truth.scale.low, "high": truth.scale.high},
        "source": truth.source,
    }
    if relative:
        geometry["noise_relative"] = True
    return Measurements(y, op, geometry, truth.volume)


def save_measurements(folder: str | Path, meas: Measurements) -> Path:
    """Write :data:`MEASUREMENTS`, :data:`GEOMETRY` and, when known, :data:`GROUND_TRUTH`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    complex_y = torch.is_complex(meas.y)
    stored = torch.view_as_real(meas.y) if complex_y else meas.y  # safetensors: no complex dtype
    atomic_save_safetensors(folder / MEASUREMENTS, {"y": stored}, {"complex": str(complex_y)})
    atomic_write_json(folder / GEOMETRY, meas.geometry)
    if meas.truth is not None:
        save_nifti(meas.truth, folder / GROUND_TRUTH)
    return folder


def load_measurements(folder: str | Path) -> Measurements:
    """A :func:`save_measurements` folder: ``y``, the rebuilt operator, the geometry and the
    ground truth if saved. A missing file or measurements that do not fit the operator are one
    ValueError naming the folder."""
    folder = Path(folder)
    for name in (GEOMETRY, MEASUREMENTS):
        if not (folder / name).is_file():
            raise ValueError(f"{folder}: missing {name} (write it with simulate)")
    try:
        geometry = read_json(folder / GEOMETRY)
        y = load_safetensors(folder / MEASUREMENTS)["y"]
        complex_y = safetensors_metadata(folder / MEASUREMENTS).get("complex") == "True"
        kwargs = dict(geometry["operator"])
        kind, image_size = kwargs.pop("kind"), geometry["image_size"]
    except (ValueError, KeyError) as err:
        raise ValueError(f"{folder}: unreadable measurements ({err})") from None
    y = torch.view_as_complex(y.contiguous()) if complex_y else y
    op = build_operator(kind, image_size, kwargs)
    if y.dim() != 1 + len(op.out_shape) or tuple(y.shape[1:]) != tuple(op.out_shape):
        raise ValueError(
            f"{folder / MEASUREMENTS}: measurements of shape {tuple(y.shape)} do not fit the "
            f"{kind} operator, which expects (D, {', '.join(map(str, op.out_shape))})"
        )
    truth = load_nifti(folder / GROUND_TRUTH) if (folder / GROUND_TRUTH).is_file() else None
    return Measurements(y, op, geometry, truth)


__all__ = [
    "GEOMETRY",
    "GROUND_TRUTH",
    "MEASUREMENTS",
    "GroundTruth",
    "Measurements",
    "OperatorConfig",
    "PhantomConfig",
    "build_operator",
    "ground_truth",
    "load_measurements",
    "measure",
    "save_measurements",
    "simulate",
]
