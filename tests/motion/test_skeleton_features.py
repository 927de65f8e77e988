"""Skeleton kinematics, rotation conversions and the HumanML3D-style features' exact inverse."""

import math

import pytest
import torch

from polydiff.motion.features import (
    FeatureLayout,
    canonicalize,
    features_to_positions,
    features_to_rotations,
    motion_to_features,
)
from polydiff.motion.rotations import (
    euler_to_matrix,
    matrix_to_6d,
    matrix_to_euler,
    rotation_6d_to_matrix,
    rotation_between,
)
from polydiff.motion.skeleton import (
    PARENTS,
    forward_kinematics,
    global_rotations,
    inverse_kinematics,
    smpl22,
)


def random_rotations(*shape, scale=0.8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    angles = torch.randn(*shape, 3, generator=generator, dtype=torch.float64) * scale
    return euler_to_matrix(angles, "ZXY")


def random_motion(frames=24, seed=0):
    generator = torch.Generator().manual_seed(seed + 1)
    root = torch.randn(frames, 3, generator=generator, dtype=torch.float64)
    return root, random_rotations(frames, 22, seed=seed)


def test_rest_pose_forward_kinematics_gives_the_offsets():
    skeleton = smpl22()
    rest = skeleton.rest_positions()
    assert torch.allclose(rest[0], skeleton.offsets[0])
    bones = rest[1:] - rest[list(PARENTS[1:])]
    assert torch.allclose(bones, skeleton.offsets[1:], atol=1e-15)
    assert rest[:, 1].min() > 0.0  # the rest pose stands above the floor


def test_forward_kinematics_keeps_bone_lengths_and_composes_rotations():
    skeleton = smpl22()
    root, rotations = random_motion()
    positions = forward_kinematics(skeleton, root, rotations)
    lengths = (positions[:, 1:] - positions[:, list(PARENTS[1:])]).norm(dim=-1)
    assert torch.allclose(lengths, skeleton.offsets[1:].norm(dim=-1).expand_as(lengths))
    world = global_rotations(skeleton, rotations)
    assert torch.allclose(world[:, 4], rotations[:, 0] @ rotations[:, 1] @ rotations[:, 4])


def test_inverse_kinematics_reproduces_positions():
    skeleton = smpl22()
    root, rotations = random_motion(seed=3)
    positions = forward_kinematics(skeleton, root, rotations)
    found = inverse_kinematics(skeleton, positions)
    assert torch.allclose(forward_kinematics(skeleton, root, found), positions, atol=1e-12)
    assert torch.allclose(found[:, 0], rotations[:, 0], atol=1e-12)  # the root has no twist


@pytest.mark.parametrize("order", ["ZXY", "XYZ", "YZX", "ZYX", "XZY", "YXZ"])
def test_euler_round_trip_including_gimbal_lock(order):
    angles = torch.rand(200, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    angles = (angles - 0.5) * torch.tensor([2 * math.pi, math.pi, 2 * math.pi], dtype=torch.float64)
    angles[:10, 1] = math.pi / 2
    matrix = euler_to_matrix(angles, order)
    again = euler_to_matrix(matrix_to_euler(matrix, order), order)
    assert torch.allclose(again, matrix, atol=1e-12)
    assert torch.allclose(matrix_to_euler(matrix, order)[10:], angles[10:], atol=1e-10)


def test_6d_round_trip_and_projection():
    rotations = random_rotations(500, scale=2.0)
    assert torch.allclose(rotation_6d_to_matrix(matrix_to_6d(rotations)), rotations, atol=1e-14)
    noisy = matrix_to_6d(rotations) + 0.1 * torch.randn(500, 6, dtype=torch.float64)
    projected = rotation_6d_to_matrix(noisy)
    eye = torch.eye(3, dtype=torch.float64).expand(500, 3, 3)
    assert torch.allclose(projected.transpose(-1, -2) @ projected, eye, atol=1e-12)
    assert torch.allclose(torch.linalg.det(projected), torch.ones(500, dtype=torch.float64))


def test_rotation_between_turns_one_direction_onto_another():
    a = torch.randn(100, 3, dtype=torch.float64)
    b = torch.cat([torch.randn(99, 3, dtype=torch.float64), -a[99:]])  # last one antiparallel
    turned = (rotation_between(a, b) @ a.unsqueeze(-1)).squeeze(-1)
    unit = torch.nn.functional.normalize
    assert torch.allclose(unit(turned, dim=-1), unit(b, dim=-1), atol=1e-12)


def test_features_have_the_humanml3d_layout():
    root, rotations = random_motion(frames=10)
    features = motion_to_features(forward_kinematics(smpl22(), root, rotations), rotations)
    layout = FeatureLayout(22)
    assert features.shape == (9, 263) and layout.dim == 263
    assert (layout.ric.stop - layout.ric.start, layout.rot6d.stop - layout.rot6d.start) == (63, 126)
    assert layout.local_velocity.stop - layout.local_velocity.start == 66
    assert set(features[:, layout.contacts].unique().tolist()) <= {0.0, 1.0}


def test_features_to_positions_inverts_exactly():
    skeleton = smpl22()
    root, rotations = random_motion(frames=40, seed=5)
    positions = forward_kinematics(skeleton, root, rotations)
    recovered = features_to_positions(motion_to_features(positions, rotations))
    assert torch.allclose(recovered, canonicalize(positions)[:-1], atol=1e-12)


def test_features_ignore_heading_and_horizontal_shift_and_batch():
    skeleton = smpl22()
    root, rotations = random_motion(frames=16, seed=7)
    positions = forward_kinematics(skeleton, root, rotations)
    turn = euler_to_matrix(torch.tensor([0.0, 1.3, 0.0], dtype=torch.float64), "XYZ")
    moved = positions @ turn.T + torch.tensor([4.0, 0.0, -2.0], dtype=torch.float64)
    first = motion_to_features(positions, rotations)
    assert torch.allclose(motion_to_features(moved, rotations), first, atol=1e-12)
    batch = motion_to_features(torch.stack([positions, moved]), torch.stack([rotations] * 2))
    assert torch.allclose(batch[1], first, atol=1e-12)


def test_features_to_rotations_drive_forward_kinematics_to_the_same_positions():
    skeleton = smpl22()
    root, rotations = random_motion(frames=12, seed=9)
    positions = forward_kinematics(skeleton, root, rotations)
    features = motion_to_features(positions, rotations)
    new_root, local = features_to_rotations(features, skeleton)
    assert torch.allclose(local[:, 1:], rotations[:-1, 1:], atol=1e-12)
    rebuilt = forward_kinematics(skeleton, new_root, local)
    assert torch.allclose(rebuilt, features_to_positions(features), atol=1e-12)


def test_features_without_rotations_use_inverse_kinematics():
    skeleton = smpl22()
    root, rotations = random_motion(frames=8, seed=11)
    positions = forward_kinematics(skeleton, root, rotations)
    features = motion_to_features(positions)
    assert torch.allclose(features_to_positions(features), canonicalize(positions)[:-1])
    new_root, local = features_to_rotations(features, skeleton)
    assert torch.allclose(
        forward_kinematics(skeleton, new_root, local), canonicalize(positions)[:-1], atol=1e-12
    )


def test_canonicalize_puts_the_clip_on_the_floor_facing_forward():
    skeleton = smpl22()
    root, rotations = random_motion(frames=6, seed=13)
    out = canonicalize(forward_kinematics(skeleton, root, rotations), floor=True)
    assert torch.allclose(out[0, 0, [0, 2]], torch.zeros(2, dtype=torch.float64))
    assert out[..., 1].min().abs() < 1e-15
    across = out[0, 1] - out[0, 2] + out[0, 16] - out[0, 17]
    assert across[2].abs() < 1e-12 and across[0] > 0  # left is +x, so it faces +z
