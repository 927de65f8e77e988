"""Seedable 3D phantoms: randomised Shepp–Logan heads and random-ellipsoid volumes.

Volumes are ``(D, H, W)`` = ``(z, y, x)`` tensors on the normalised cube [-1, 1]^3 (voxel
centres), so axial slices are ``volume[k]``. Every generator draws from its own
``torch.Generator(seed)``: the same seed gives the same volume on every machine.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

# The 3D Shepp–Logan head: the ten ellipsoids of the 3D extension given by Kak and Slaney
# (1988), "Principles of Computerized Tomographic Imaging", Ch. 3, with the higher-contrast
# intensities of Toft (1996), "The Radon Transform: Theory and Implementation", pp. 199–200.
# Columns: intensity, semi-axes (a, b, c) along (x, y, z), centre (x0, y0, z0), Euler angles
# (phi, theta, psi) in degrees (z-x-z convention).
MODIFIED_SHEPP_LOGAN_3D: tuple[tuple[float, ...], ...] = (
    (1.0, 0.6900, 0.920, 0.810, 0.00, 0.0000, 0.00, 0.0, 0.0, 0.0),
    (-0.8, 0.6624, 0.874, 0.780, 0.00, -0.0184, 0.00, 0.0, 0.0, 0.0),
    (-0.2, 0.1100, 0.310, 0.220, 0.22, 0.0000, 0.00, -18.0, 0.0, 10.0),
    (-0.2, 0.1600, 0.410, 0.280, -0.22, 0.0000, 0.00, 18.0, 0.0, 10.0),
    (0.1, 0.2100, 0.250, 0.410, 0.00, 0.3500, -0.15, 0.0, 0.0, 0.0),
    (0.1, 0.0460, 0.046, 0.050, 0.00, 0.1000, 0.25, 0.0, 0.0, 0.0),
    (0.1, 0.0460, 0.046, 0.050, 0.00, -0.1000, 0.25, 0.0, 0.0, 0.0),
    (0.1, 0.0460, 0.023, 0.050, -0.08, -0.6050, 0.00, 0.0, 0.0, 0.0),
    (0.1, 0.0230, 0.023, 0.020, 0.00, -0.6060, 0.00, 0.0, 0.0, 0.0),
    (0.1, 0.0230, 0.046, 0.020, 0.06, -0.6050, 0.00, 0.0, 0.0, 0.0),
)


def _as_shape(shape: int | Sequence[int]) -> tuple[int, int, int]:
    dhw = (shape,) * 3 if isinstance(shape, int) else tuple(shape)
    if len(dhw) != 3 or any(int(n) != n or n < 1 for n in dhw):
        raise ValueError(f"phantom shape must be an int or (D, H, W) of positive ints, got {shape}")
    return int(dhw[0]), int(dhw[1]), int(dhw[2])


def euler_zxz(phi: Tensor, theta: Tensor, psi: Tensor) -> Tensor:
    """Rotation matrices ``Rz(phi) Rx(theta) Rz(psi)`` (radians), shape (..., 3, 3)."""

    def rz(a: Tensor) -> Tensor:
        c, s, o, z = torch.cos(a), torch.sin(a), torch.ones_like(a), torch.zeros_like(a)
        return torch.stack([c, -s, z, s, c, z, z, z, o], -1).reshape(*a.shape, 3, 3)

    def rx(a: Tensor) -> Tensor:
        c, s, o, z = torch.cos(a), torch.sin(a), torch.ones_like(a), torch.zeros_like(a)
        return torch.stack([o, z, z, z, c, -s, z, s, c], -1).reshape(*a.shape, 3, 3)

    return rz(phi) @ rx(theta) @ rz(psi)


def render_ellipsoids(
    shape: int | Sequence[int],
    intensity: Tensor,
    axes: Tensor,
    centre: Tensor,
    rotation: Tensor,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Sum of uniform ellipsoids sampled at the voxel centres of [-1, 1]^3.

    A voxel at ``p = (x, y, z)`` lies in ellipsoid ``e`` when
    ``|| (R_e^T (p - c_e)) / axes_e ||_2 <= 1``. Shapes: intensity (E,), axes / centre (E, 3)
    as (x, y, z), rotation (E, 3, 3). Returns (D, H, W).
    """
    d, h, w = _as_shape(shape)
    lin = [
        torch.linspace(-1, 1, n, dtype=torch.float64)
        if n > 1
        else torch.zeros(1, dtype=torch.float64)
        for n in (d, h, w)
    ]
    z, y, x = torch.meshgrid(*lin, indexing="ij")
    p = torch.stack([x, y, z], -1).reshape(-1, 3)
    vol = torch.zeros(p.shape[0], dtype=torch.float64)
    for e in range(intensity.shape[0]):
        local = (p - centre[e].double()) @ rotation[e].double()  # rows: R^T (p - c)
        inside = ((local / axes[e].double()) ** 2).sum(-1) <= 1
        vol += intensity[e].double() * inside
    return vol.reshape(d, h, w).to(dtype)


def shepp_logan_3d(
    shape: int | Sequence[int] = 64,
    seed: int | None = None,
    jitter: float = 0.1,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """The modified 3D Shepp–Logan head, randomised when ``seed`` is given.

    With ``seed=None`` this is the standard table :data:`MODIFIED_SHEPP_LOGAN_3D` (values in
    [0, 1]). With a seed: skull and brain share one random per-axis scale ``1 + jitter U(-1, 1)``
    (so the skull stays a shell); every inner feature gets its own axis scale
    ``1 + jitter U(-1, 1)``, centre shift ``0.2 jitter U(-1, 1)``, angle change
    ``100 jitter U(-1, 1)`` degrees and intensity scale ``1 + 3 jitter U(-1, 1)``; finally the
    whole head is rotated by random z-x-z angles of ``100 jitter U(-1, 1)`` degrees. The
    volume is clamped to >= 0.
    """
    table = torch.tensor(MODIFIED_SHEPP_LOGAN_3D, dtype=torch.float64)
    intensity, axes, centre = table[:, 0].clone(), table[:, 1:4].clone(), table[:, 4:7].clone()
    angles = torch.deg2rad(table[:, 7:10])
    rotation = euler_zxz(angles[:, 0], angles[:, 1], angles[:, 2])
    if seed is not None:
        if not 0 <= jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {jitter}")
        g = torch.Generator().manual_seed(int(seed))

        def u(*size: int) -> Tensor:
            return 2 * torch.rand(*size, generator=g, dtype=torch.float64) - 1

        n_in = table.shape[0] - 2  # inner features; rows 0, 1 are skull and brain
        axes[:2] = axes[:2] * (1 + jitter * u(1, 3))
        axes[2:] = axes[2:] * (1 + jitter * u(n_in, 3))
        centre[2:] = centre[2:] + 0.2 * jitter * u(n_in, 3)
        angles[2:] = angles[2:] + math.radians(100 * jitter) * u(n_in, 3)
        intensity[2:] = intensity[2:] * (1 + 3 * jitter * u(n_in))
        head = euler_zxz(*(math.radians(100 * jitter) * u(3)))
        rotation = head @ euler_zxz(angles[:, 0], angles[:, 1], angles[:, 2])
        centre = centre @ head.T
    vol = render_ellipsoids(shape, intensity, axes, centre, rotation, torch.float64)
    return vol.clamp_min(0).to(dtype)


def random_ellipsoids(
    shape: int | Sequence[int] = 64,
    seed: int = 0,
    n_ellipsoids: int = 12,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """A random volume: a large support ellipsoid filled with ``n_ellipsoids`` random
    ellipsoids (semi-axes 0.05–0.35, random orientation, intensity ±U(0.1, 0.5)), clamped to
    >= 0 and scaled to max 1. Complements the Shepp–Logan family with unstructured shapes.
    """
    if n_ellipsoids < 0:
        raise ValueError(f"n_ellipsoids must be >= 0, got {n_ellipsoids}")
    g = torch.Generator().manual_seed(int(seed))

    def rand(*size: int) -> Tensor:
        return torch.rand(*size, generator=g, dtype=torch.float64)

    n = n_ellipsoids
    sign = torch.where(rand(n) < 0.3, -1.0, 1.0)
    intensity = torch.cat([torch.tensor([0.5], dtype=torch.float64), sign * (0.1 + 0.4 * rand(n))])
    support_axes = (0.75 + 0.15 * rand(1, 3)).clamp(max=0.95)
    axes = torch.cat([support_axes, 0.05 + 0.3 * rand(n, 3)])
    centre = torch.cat([torch.zeros(1, 3, dtype=torch.float64), 0.6 * (2 * rand(n, 3) - 1)])
    angles = torch.cat([torch.zeros(1, 3, dtype=torch.float64), 2 * math.pi * rand(n, 3)])
    rotation = euler_zxz(angles[:, 0], angles[:, 1], angles[:, 2])
    vol = render_ellipsoids(shape, intensity, axes, centre, rotation, torch.float64).clamp_min(0)
    return (vol / vol.max().clamp_min(1e-12)).to(dtype)


PHANTOM_KINDS = ("shepp_logan", "ellipsoids")


def check_phantom_kind(kind: str, option: str = "kind") -> None:
    """A ValueError naming ``option`` unless ``kind`` is one of :data:`PHANTOM_KINDS`."""
    if kind not in PHANTOM_KINDS:
        raise ValueError(f"{option}={kind!r}: choose {' or '.join(PHANTOM_KINDS)}")


def phantom(kind: str, shape: int | Sequence[int] = 64, seed: int = 0) -> Tensor:
    """The built-in volume ``kind`` (``shepp_logan``: :func:`shepp_logan_3d`, ``ellipsoids``:
    :func:`random_ellipsoids`) of ``seed``."""
    check_phantom_kind(kind)
    make = shepp_logan_3d if kind == "shepp_logan" else random_ellipsoids
    return make(shape, seed=seed)


def phantom_slices(
    n_volumes: int,
    shape: int | Sequence[int] = 64,
    kind: str = "shepp_logan",
    seed: int = 0,
    axis: int = 0,
) -> Tensor:
    """Training slices: ``n_volumes`` phantoms (seeds ``seed, seed + 1, ...``) cut into 2D
    slices along ``axis``, stacked to (n_volumes * D, H, W) for ``axis=0``."""
    check_phantom_kind(kind)
    vols = [phantom(kind, shape, seed + i) for i in range(n_volumes)]
    return torch.cat([v.movedim(axis, 0) for v in vols]) if vols else torch.empty(0)
