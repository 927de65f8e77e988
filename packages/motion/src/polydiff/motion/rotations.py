"""Rotation helpers on batched rotation matrices ``[..., 3, 3]`` (torch, any float dtype).

A rotation matrix maps a joint's local coordinates to its parent's (columns are the local axes).
Euler angles follow the BVH convention: channels ``Zrotation Xrotation Yrotation`` mean the
intrinsic product ``R = Rz(a) @ Rx(b) @ Ry(c)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

AXES = "XYZ"


def axis_rotation(axis: str, angle: Tensor) -> Tensor:
    """Rotation by ``angle`` (radians, any shape) about the coordinate axis ``axis`` (X, Y or Z)."""
    c, s = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(angle), torch.zeros_like(angle)
    rows = {
        "X": ((one, zero, zero), (zero, c, -s), (zero, s, c)),
        "Y": ((c, zero, s), (zero, one, zero), (-s, zero, c)),
        "Z": ((c, -s, zero), (s, c, zero), (zero, zero, one)),
    }[axis.upper()]
    return torch.stack([torch.stack(row, -1) for row in rows], -2)


def euler_to_matrix(angles: Tensor, order: str) -> Tensor:
    """Intrinsic Euler angles ``[..., 3]`` (radians, in the order of ``order``, e.g. "ZXY")."""
    matrix = axis_rotation(order[0], angles[..., 0])
    for k in (1, 2):
        matrix = matrix @ axis_rotation(order[k], angles[..., k])
    return matrix


def matrix_to_euler(matrix: Tensor, order: str) -> Tensor:
    """Inverse of `euler_to_matrix` for a Tait-Bryan ``order`` (three different axes); the middle
    angle lies in [-pi/2, pi/2]. At gimbal lock the last angle is set to 0."""
    i, j, k = (AXES.index(a) for a in order.upper())
    sign = 1.0 if (j - i) % 3 == 1 else -1.0  # +1 for the cyclic orders XYZ, YZX, ZXY
    middle = torch.asin((sign * matrix[..., i, k]).clamp(-1.0, 1.0))
    first = torch.atan2(-sign * matrix[..., j, k], matrix[..., k, k])
    last = torch.atan2(-sign * matrix[..., i, j], matrix[..., i, i])
    # cos(middle) ~ 0: the first and last axes coincide; put the whole turn in the first angle.
    locked = torch.cos(middle).abs() < 1e-7
    first_locked = torch.atan2(sign * matrix[..., k, j], matrix[..., j, j])
    first = torch.where(locked, first_locked, first)
    last = torch.where(locked, torch.zeros_like(last), last)
    return torch.stack([first, middle, last], -1)


def matrix_to_6d(matrix: Tensor) -> Tensor:
    """The continuous 6D representation: the first two columns ``[..., 6]`` (Zhou et al., "On the
    Continuity of Rotation Representations in Neural Networks", CVPR 2019)."""
    return torch.cat([matrix[..., :, 0], matrix[..., :, 1]], -1)


def rotation_6d_to_matrix(six: Tensor) -> Tensor:
    """Gram-Schmidt map from any 6D vector to a rotation (Zhou et al. 2019); exact inverse of
    `matrix_to_6d` on rotations."""
    a1, a2 = six[..., :3], six[..., 3:]
    b1 = torch.nn.functional.normalize(a1, dim=-1)
    b2 = torch.nn.functional.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.linalg.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], -1)


def yaw_matrix(angle: Tensor) -> Tensor:
    """Rotation by ``angle`` about the vertical (y) axis."""
    return axis_rotation("Y", angle)


def best_rotation(source: Tensor, target: Tensor) -> Tensor:
    """Rotation ``R`` minimising ``sum |R @ source_n - target_n|^2`` over vectors ``[..., N, 3]``
    (Kabsch 1976, with the reflection fix); exact when the targets are a rotation of the sources
    and the sources span at least a plane."""
    covariance = target.transpose(-1, -2) @ source
    u, _, vh = torch.linalg.svd(covariance)
    det = torch.linalg.det(u @ vh)
    fix = torch.ones_like(covariance[..., 0])
    fix = torch.cat([fix[..., :2], det.sign().unsqueeze(-1)], -1)
    return u @ torch.diag_embed(fix) @ vh


def rotation_between(source: Tensor, target: Tensor) -> Tensor:
    """The smallest rotation turning the direction of ``source`` into that of ``target``
    (``[..., 3]`` each, any length; Rodrigues' formula). Opposite directions turn by pi about an
    axis perpendicular to ``source``."""
    a = torch.nn.functional.normalize(source, dim=-1)
    b = torch.nn.functional.normalize(target, dim=-1)
    axis = torch.linalg.cross(a, b, dim=-1)
    cos = (a * b).sum(-1)
    # a perpendicular axis for the antiparallel case: a x e_k for the axis least aligned with a
    basis = torch.eye(3, dtype=a.dtype, device=a.device)[a.abs().argmin(-1)]
    perp = torch.nn.functional.normalize(torch.linalg.cross(a, basis, dim=-1), dim=-1)
    eye = torch.eye(3, dtype=a.dtype, device=a.device).expand(*a.shape[:-1], 3, 3)
    k = _skew(axis)
    general = eye + k + k @ k / (1.0 + cos).clamp_min(1e-12)[..., None, None]
    flipped = 2.0 * perp[..., :, None] * perp[..., None, :] - eye
    return torch.where((cos < -1.0 + 1e-9)[..., None, None], flipped, general)


def _skew(v: Tensor) -> Tensor:
    zero = torch.zeros_like(v[..., 0])
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    rows = ((zero, -z, y), (z, zero, -x), (-y, x, zero))
    return torch.stack([torch.stack(row, -1) for row in rows], -2)


__all__ = [
    "axis_rotation",
    "best_rotation",
    "euler_to_matrix",
    "matrix_to_6d",
    "matrix_to_euler",
    "rotation_6d_to_matrix",
    "rotation_between",
    "yaw_matrix",
]
