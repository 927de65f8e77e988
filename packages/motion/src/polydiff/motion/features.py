"""HumanML3D-style motion features and their exact inverse (Guo et al., "Generating Diverse and
Natural 3D Human Motions from Text", CVPR 2022).

For ``T`` frames of joint positions the features have ``T - 1`` frames (velocities need the
next frame), each ``4 + 3 (J-1) + 6 (J-1) + 3 J + 4`` numbers (263 for 22 joints):

==================  =====  ==============================================================
slice               size   meaning
==================  =====  ==============================================================
root angular vel.   1      change of the facing angle (about y) to the next frame
root linear vel.    2      root xz displacement to the next frame, in the facing frame
root height         1      root y
ric positions       63     joints 1..21 relative to the root's xz, in the facing frame
rot6d               126    local rotations of joints 1..21, 6D (first two matrix columns)
local velocities    66     displacement of every joint to the next frame, facing frame
foot contacts       4      left ankle, left foot, right ankle, right foot (0 or 1)
==================  =====  ==============================================================

Unlike HumanML3D every term refers to the same frame ``t`` (its facing angle), so the inverse is
exact: integrating the root velocities from the origin facing +z and placing the ric positions
returns `canonicalize` of the input positions (all frames but the last) to float accuracy. The
features do not change under a rotation about y or a horizontal shift of the whole motion.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from polydiff.motion.rotations import (
    best_rotation,
    matrix_to_6d,
    rotation_6d_to_matrix,
    yaw_matrix,
)
from polydiff.motion.skeleton import (
    FACE_JOINTS,
    FOOT_JOINTS,
    Skeleton,
    inverse_kinematics,
    smpl22,
)

# HumanML3D's contact test: squared displacement per frame below this (m^2, at 20 fps).
CONTACT_SQUARED_DISPLACEMENT = 0.002


@dataclass(frozen=True)
class FeatureLayout:
    """Slices of the feature vector for ``n_joints`` joints."""

    n_joints: int = 22

    @property
    def root_angular(self) -> slice:
        return slice(0, 1)

    @property
    def root_linear(self) -> slice:
        return slice(1, 3)

    @property
    def root_height(self) -> slice:
        return slice(3, 4)

    @property
    def ric(self) -> slice:
        return slice(4, 4 + 3 * (self.n_joints - 1))

    @property
    def rot6d(self) -> slice:
        start = self.ric.stop
        return slice(start, start + 6 * (self.n_joints - 1))

    @property
    def local_velocity(self) -> slice:
        start = self.rot6d.stop
        return slice(start, start + 3 * self.n_joints)

    @property
    def contacts(self) -> slice:
        start = self.local_velocity.stop
        return slice(start, start + len(FOOT_JOINTS))

    @property
    def dim(self) -> int:
        return self.contacts.stop


def facing_angle(positions: Tensor) -> Tensor:
    """Facing angle ``[..., T]`` about y (0 = facing +z) from the hips and shoulders: forward is
    the horizontal direction perpendicular to the left-to-right across vector."""
    lh, rh, ls, rs = FACE_JOINTS
    across = positions[..., lh, :] - positions[..., rh, :] + positions[..., ls, :]
    across = across - positions[..., rs, :]
    # forward = across x up, with up = +y: (-a_z, 0, a_x)
    return torch.atan2(-across[..., 2], across[..., 0])


def _to_facing(vectors: Tensor, angle: Tensor) -> Tensor:
    """Rotate world vectors ``[..., T, N, 3]`` into the facing frame of angle ``[..., T]``."""
    return vectors @ yaw_matrix(angle)  # R(angle)^T @ v, row-wise


def _from_facing(vectors: Tensor, angle: Tensor) -> Tensor:
    return vectors @ yaw_matrix(angle).transpose(-1, -2)


def _wrap(angle: Tensor) -> Tensor:
    return torch.atan2(torch.sin(angle), torch.cos(angle))


def canonicalize(positions: Tensor, *, floor: bool = False) -> Tensor:
    """Move ``[..., T, J, 3]`` so frame 0 has its root above the origin and faces +z; with
    ``floor`` also shift the lowest joint of the clip to y = 0."""
    angle = facing_angle(positions[..., 0:1, :, :])  # [..., 1]
    shift = positions[..., 0:1, 0:1, :].clone()
    shift[..., 1] = 0.0
    out = _to_facing(positions - shift, angle)
    if floor:
        out = out.clone()
        out[..., 1] -= out[..., 1].amin(dim=(-1, -2), keepdim=True)
    return out


def foot_contacts(positions: Tensor) -> Tensor:
    """HumanML3D's foot contacts ``[..., T-1, 4]``: squared displacement of each foot joint
    (left ankle, left foot, right ankle, right foot) to the next frame below 0.002 m^2."""
    feet = positions[..., list(FOOT_JOINTS), :]
    step = (feet[..., 1:, :, :] - feet[..., :-1, :, :]).square().sum(-1)
    return (step < CONTACT_SQUARED_DISPLACEMENT).to(positions.dtype)


def motion_to_features(
    positions: Tensor,
    rotations: Tensor | Literal[False] | None = None,
    skeleton: Skeleton | None = None,
) -> Tensor:
    """Features ``[..., T-1, D]`` of joint positions ``[..., T, J, 3]`` and their local
    rotations ``[..., T, J, 3, 3]`` (found by `inverse_kinematics` when not given; False: no
    rotation part, see `position_features`)."""
    angle = facing_angle(positions)
    now, later = positions[..., :-1, :, :], positions[..., 1:, :, :]
    angle_now = angle[..., :-1]
    root = now[..., 0:1, :]
    root_step = _to_facing(later[..., 0:1, :] - root, angle_now)[..., 0, :]
    relative = now[..., 1:, :] - root * torch.tensor([1.0, 0.0, 1.0]).to(root)
    ric = _to_facing(relative, angle_now)
    velocity = _to_facing(later - now, angle_now)
    parts = [
        _wrap(angle[..., 1:] - angle_now).unsqueeze(-1),
        root_step[..., [0, 2]],
        root[..., 0, 1:2],
        ric.flatten(-2),
        velocity.flatten(-2),
        foot_contacts(positions),
    ]
    if rotations is not False:
        if rotations is None:
            rotations = inverse_kinematics(skeleton or smpl22(), positions)
        parts.insert(4, matrix_to_6d(rotations[..., :-1, 1:, :, :]).flatten(-2))
    return torch.cat(parts, -1)


def position_features(positions: Tensor) -> Tensor:
    """The features of `motion_to_features` without the rotations (``[..., T-1, 12 J - 1 -
    6 (J-1)]``, 137 for 22 joints): everything that joint positions alone determine, so it is
    the same for a clip and for its positions put on another skeleton by IK."""
    return motion_to_features(positions, rotations=False)


def recover_root(features: Tensor) -> tuple[Tensor, Tensor]:
    """Facing angles ``[..., T]`` and root positions ``[..., T, 3]`` integrated from the root
    velocities, starting at the origin facing +z."""
    layout = FeatureLayout(_n_joints(features))
    turn = features[..., layout.root_angular][..., 0]
    angle = torch.cumsum(turn, -1) - turn  # angle[t] = sum of the turns before t
    step = torch.zeros(*features.shape[:-1], 1, 3, dtype=features.dtype, device=features.device)
    step[..., 0, [0, 2]] = features[..., layout.root_linear]
    world_step = _from_facing(step, angle)[..., 0, :]
    root = torch.cumsum(world_step, -2) - world_step  # root[t] = sum of the steps before t
    root[..., 1] = features[..., layout.root_height][..., 0]
    return angle, root


def features_to_positions(features: Tensor) -> Tensor:
    """Joint positions ``[..., T, J, 3]`` from features ``[..., T, D]`` (root integrated from the
    velocities, the other joints from the ric positions)."""
    n_joints = _n_joints(features)
    layout = FeatureLayout(n_joints)
    angle, root = recover_root(features)
    ric = features[..., layout.ric].unflatten(-1, (n_joints - 1, 3))
    joints = _from_facing(ric, angle)
    joints = joints + (root * torch.tensor([1.0, 0.0, 1.0]).to(root)).unsqueeze(-2)
    return torch.cat([root.unsqueeze(-2), joints], -2)


def features_to_rotations(
    features: Tensor, skeleton: Skeleton | None = None
) -> tuple[Tensor, Tensor]:
    """Root positions ``[..., T, 3]`` and local rotations ``[..., T, J, 3, 3]`` from features:
    joints 1.. from their 6D part, the root's (not in the features) as the best rotation of its
    rest bones onto the recovered positions of its children."""
    skeleton = skeleton or smpl22()
    n_joints = _n_joints(features)
    layout = FeatureLayout(n_joints)
    positions = features_to_positions(features)
    local = rotation_6d_to_matrix(features[..., layout.rot6d].unflatten(-1, (n_joints - 1, 6)))
    children = skeleton.children(0)
    bones = positions[..., children, :] - positions[..., 0:1, :]
    offsets = skeleton.offsets.to(bones)[children].expand_as(bones)
    root_rotation = best_rotation(offsets, bones)
    return positions[..., 0, :], torch.cat([root_rotation.unsqueeze(-3), local], -3)


def _n_joints(features: Tensor) -> int:
    # D = 4 + 3 (J-1) + 6 (J-1) + 3 J + 4 = 12 J - 1
    n_joints, remainder = divmod(features.shape[-1] + 1, 12)
    if remainder:
        raise ValueError(f"a feature size of 12 J - 1 was expected, got {features.shape[-1]}")
    return n_joints


__all__ = [
    "CONTACT_SQUARED_DISPLACEMENT",
    "FeatureLayout",
    "canonicalize",
    "facing_angle",
    "features_to_positions",
    "features_to_rotations",
    "foot_contacts",
    "motion_to_features",
    "position_features",
    "recover_root",
]
