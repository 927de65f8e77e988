"""The 22-joint body skeleton (HumanML3D / SMPL joint order) and its kinematics.

Coordinates are metres, y up, the body facing +z in its rest pose (a T-pose) with its left side
at +x, as in HumanML3D. A pose is the root (pelvis) position plus one local rotation matrix per
joint, mapping the joint's frame to its parent's (the root's to the world).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from polydiff.motion.rotations import best_rotation, rotation_between

JOINT_NAMES = (
    "pelvis",
    "left_hip",
    "right_hip",
    "spine1",
    "left_knee",
    "right_knee",
    "spine2",
    "left_ankle",
    "right_ankle",
    "spine3",
    "left_foot",
    "right_foot",
    "neck",
    "left_collar",
    "right_collar",
    "head",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
)
PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19)

# Rest offsets from each joint's parent (the root's: its rest position, feet on the floor y=0).
# An adult of about 1.7 m with straight vertical legs, so leg IK stays analytic.
OFFSETS = (
    (0.0, 0.93, 0.0),
    (0.09, -0.08, 0.0),
    (-0.09, -0.08, 0.0),
    (0.0, 0.11, -0.01),
    (0.0, -0.40, 0.0),
    (0.0, -0.40, 0.0),
    (0.0, 0.13, 0.0),
    (0.0, -0.40, 0.0),
    (0.0, -0.40, 0.0),
    (0.0, 0.05, 0.02),
    (0.0, -0.04, 0.12),
    (0.0, -0.04, 0.12),
    (0.0, 0.21, -0.02),
    (0.07, 0.12, -0.01),
    (-0.07, 0.12, -0.01),
    (0.0, 0.09, 0.05),
    (0.11, 0.03, 0.0),
    (-0.11, 0.03, 0.0),
    (0.26, 0.0, 0.0),
    (-0.26, 0.0, 0.0),
    (0.25, 0.0, 0.0),
    (-0.25, 0.0, 0.0),
)

# Named joint groups used by features and metrics.
FOOT_JOINTS = (7, 10, 8, 11)  # left ankle, left foot, right ankle, right foot
LEFT_FOOT, RIGHT_FOOT = (7, 10), (8, 11)
FACE_JOINTS = (1, 2, 16, 17)  # left hip, right hip, left shoulder, right shoulder


@dataclass(frozen=True)
class Skeleton:
    """Joint names, parents (-1 for the root; parents precede children) and rest offsets."""

    names: tuple[str, ...]
    parents: tuple[int, ...]
    offsets: Tensor  # [J, 3] float64

    @property
    def n_joints(self) -> int:
        return len(self.names)

    def children(self, joint: int) -> list[int]:
        return [j for j, p in enumerate(self.parents) if p == joint]

    def with_offsets(self, offsets: Tensor) -> Skeleton:
        """The same topology with other bone offsets (another body's proportions)."""
        return Skeleton(self.names, self.parents, torch.as_tensor(offsets, dtype=torch.float64))

    def rest_positions(self) -> Tensor:
        """Joint positions ``[J, 3]`` of the rest pose with the root at its rest offset."""
        eye = torch.eye(3, dtype=self.offsets.dtype).expand(self.n_joints, 3, 3)
        return forward_kinematics(self, self.offsets[0], eye)


def smpl22() -> Skeleton:
    """The default 22-joint skeleton."""
    return Skeleton(JOINT_NAMES, PARENTS, torch.tensor(OFFSETS, dtype=torch.float64))


def forward_kinematics(skeleton: Skeleton, root: Tensor, rotations: Tensor) -> Tensor:
    """Joint positions ``[..., J, 3]`` from root positions ``[..., 3]`` and local rotations
    ``[..., J, 3, 3]``: ``global_j = global_parent @ local_j`` and
    ``position_j = position_parent + global_parent @ offset_j``."""
    offsets = skeleton.offsets.to(rotations)
    globals_, positions = [rotations[..., 0, :, :]], [root]
    for j in range(1, skeleton.n_joints):
        parent = skeleton.parents[j]
        globals_.append(globals_[parent] @ rotations[..., j, :, :])
        positions.append(positions[parent] + globals_[parent] @ offsets[j])
    return torch.stack(positions, -2)


def global_rotations(skeleton: Skeleton, rotations: Tensor) -> Tensor:
    """World rotations ``[..., J, 3, 3]`` of every joint from local ones."""
    globals_ = [rotations[..., 0, :, :]]
    for j in range(1, skeleton.n_joints):
        globals_.append(globals_[skeleton.parents[j]] @ rotations[..., j, :, :])
    return torch.stack(globals_, -3)


def inverse_kinematics(skeleton: Skeleton, positions: Tensor) -> Tensor:
    """Local rotations ``[..., J, 3, 3]`` that put the skeleton's bones along ``positions``
    ``[..., J, 3]``: a joint with one child gets the smallest rotation (in its parent's frame)
    turning its rest bone onto the observed one, a joint with several children the best rotation
    of all its bones (Kabsch), a leaf the identity. Twist about a single bone is not observable
    from positions and is left at zero, as in HumanML3D's IK. When the bone lengths match
    the skeleton's, ``forward_kinematics(skeleton, positions[..., 0, :], result)`` reproduces
    ``positions``."""
    offsets = skeleton.offsets.to(positions)
    eye = torch.eye(3, dtype=positions.dtype, device=positions.device)
    batch = positions.shape[:-2]
    globals_: list[Tensor] = [eye.expand(*batch, 3, 3)] * skeleton.n_joints
    locals_: list[Tensor] = [eye.expand(*batch, 3, 3)] * skeleton.n_joints
    for j in range(skeleton.n_joints):
        children = skeleton.children(j)
        parent = skeleton.parents[j]
        parent_global = globals_[parent] if parent >= 0 else eye.expand(*batch, 3, 3)
        if children:
            bones = positions[..., children, :] - positions[..., j : j + 1, :]
            in_parent = bones @ parent_global  # parent_global^T @ bone, row-wise
            if len(children) == 1:
                local = rotation_between(
                    offsets[children[0]].expand_as(in_parent[..., 0, :]), in_parent[..., 0, :]
                )
            else:
                local = best_rotation(offsets[children].expand_as(in_parent), in_parent)
            locals_[j] = local
        globals_[j] = parent_global @ locals_[j]
    return torch.stack(locals_, -3)


def bone_offsets_from_positions(skeleton: Skeleton, positions: Tensor) -> Tensor:
    """Offsets ``[J, 3]`` of the skeleton's rest directions with the bone lengths measured in
    one pose ``[J, 3]`` (for joint arrays of another body)."""
    offsets = skeleton.offsets.clone()
    for j in range(1, skeleton.n_joints):
        length = (positions[j] - positions[skeleton.parents[j]]).norm()
        offsets[j] = offsets[j] / offsets[j].norm() * length
    offsets[0] = positions[0].to(offsets)
    return offsets


__all__ = [
    "FACE_JOINTS",
    "FOOT_JOINTS",
    "JOINT_NAMES",
    "LEFT_FOOT",
    "OFFSETS",
    "PARENTS",
    "RIGHT_FOOT",
    "Skeleton",
    "bone_offsets_from_positions",
    "forward_kinematics",
    "global_rotations",
    "inverse_kinematics",
    "smpl22",
]
