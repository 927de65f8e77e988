"""BVH and .npy files: exact round trips, and one clear InputError per kind of bad input."""

import numpy as np
import pytest
import torch

from polydiff.core.errors import InputError
from polydiff.motion.features import canonicalize, motion_to_features
from polydiff.motion.io import Motion, read_bvh, read_npy, write_bvh, write_npy
from polydiff.motion.rotations import euler_to_matrix
from polydiff.motion.skeleton import JOINT_NAMES, PARENTS, Skeleton, forward_kinematics, smpl22


def sample_motion(frames=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    angles = torch.randn(frames, 22, 3, generator=generator, dtype=torch.float64) * 0.9
    root = torch.randn(frames, 3, generator=generator, dtype=torch.float64)
    return Motion(root, euler_to_matrix(angles, "XYZ"), smpl22(), 30.0)


def test_bvh_round_trip_preserves_joint_positions(tmp_path):
    motion = sample_motion()
    path = write_bvh(tmp_path / "clip.bvh", motion)
    again = read_bvh(path)
    assert again.fps == pytest.approx(30.0)
    assert torch.allclose(again.skeleton.offsets, motion.skeleton.offsets)
    assert torch.allclose(again.positions, motion.positions, atol=1e-12)
    assert torch.allclose(again.rotations, motion.rotations, atol=1e-12)


def test_bvh_reader_takes_other_channel_orders_units_and_joint_names(tmp_path):
    motion = sample_motion(frames=3, seed=1)
    text = (write_bvh(tmp_path / "a.bvh", motion)).read_text()
    # rename every joint, and scale the file to centimetres
    renamed = {name: f"mixamo:{name.title()}" for name in JOINT_NAMES}
    for name, other in sorted(renamed.items(), key=lambda kv: -len(kv[0])):
        text = text.replace(f" {name}\n", f" {other}\n")
    (tmp_path / "b.bvh").write_text(text)
    read = read_bvh(tmp_path / "b.bvh", joint_map={v: k for k, v in renamed.items()})
    assert torch.allclose(read.positions, motion.positions, atol=1e-12)
    # the same pose written with YXZ channels reads back to the same joint positions
    from polydiff.motion.rotations import matrix_to_euler

    angles = torch.rad2deg(matrix_to_euler(motion.rotations, "YXZ"))
    body = text.split("MOTION")[0].replace(
        "Zrotation Xrotation Yrotation", "Yrotation Xrotation Zrotation"
    )
    order = [0, 1, 4, 7, 10, 2, 5, 8, 11, 3, 6, 9, 12, 15, 13, 16, 18, 20, 14, 17, 19, 21]
    rows = [
        " ".join(repr(v) for v in motion.root[t].tolist() + angles[t, order].flatten().tolist())
        for t in range(3)
    ]
    (tmp_path / "c.bvh").write_text(
        body + "MOTION\nFrames: 3\nFrame Time: 0.05\n" + "\n".join(rows)
    )
    again = read_bvh(tmp_path / "c.bvh", joint_map={v: k for k, v in renamed.items()}, scale=0.5)
    assert torch.allclose(again.positions, motion.positions * 0.5, atol=1e-12)


def test_motion_from_positions_measures_the_bones(tmp_path):
    skeleton = smpl22().with_offsets(smpl22().offsets * 1.1)
    source = sample_motion(frames=5, seed=2)
    positions = forward_kinematics(skeleton, source.root, source.rotations)
    motion = Motion.from_positions(positions, fps=20)
    assert torch.allclose(motion.skeleton.offsets[1:], skeleton.offsets[1:])
    assert torch.allclose(motion.positions, positions, atol=1e-12)
    again = read_bvh(write_bvh(tmp_path / "p.bvh", motion))
    assert torch.allclose(again.positions, positions, atol=1e-12)


def test_motion_from_features_writes_the_encoded_positions(tmp_path):
    source = sample_motion(frames=6, seed=4)
    features = motion_to_features(source.positions, source.rotations)
    motion = Motion.from_features(features, fps=20)
    again = read_bvh(write_bvh(tmp_path / "f.bvh", motion))
    assert torch.allclose(again.positions, canonicalize(source.positions)[:-1], atol=1e-12)


def richer_skeleton():
    """Our skeleton with an extra spine joint 'mid' between spine2 and spine3 and a toe end."""
    base = smpl22()
    new = [i if i < 9 else i + 1 for i in range(22)]
    names = [*JOINT_NAMES[:9], "mid", *JOINT_NAMES[9:], "left_toe_end"]
    parents = [-1] * 24
    for old, parent in enumerate(PARENTS):
        parents[new[old]] = new[parent] if parent >= 0 else -1
    parents[9], parents[10], parents[23] = 6, 9, new[10]
    mid = torch.tensor([0.0, 0.02, 0.01], dtype=torch.float64)
    offsets = torch.zeros(24, 3, dtype=torch.float64)
    offsets[new] = base.offsets
    offsets[9], offsets[10] = mid, base.offsets[9] - mid
    offsets[23] = torch.tensor([0.0, 0.0, 0.05], dtype=torch.float64)
    return Skeleton(tuple(names), tuple(parents), offsets), new


def test_a_richer_skeleton_reads_with_its_extra_joints_dropped(tmp_path):
    skeleton, keep = richer_skeleton()
    generator = torch.Generator().manual_seed(5)
    angles = torch.randn(6, 24, 3, generator=generator, dtype=torch.float64) * 0.7
    angles[:, 9] = 0.0  # the extra spine joint does not bend, so bone lengths stay fixed
    root = torch.randn(6, 3, generator=generator, dtype=torch.float64)
    motion = Motion(root, euler_to_matrix(angles, "ZXY"), skeleton, 20.0)
    path = write_bvh(tmp_path / "rich.bvh", motion)
    with pytest.raises(InputError, match="unknown joints \\['left_toe_end', 'mid'\\]"):
        read_bvh(path)
    read = read_bvh(path, drop_other_joints=True)
    assert torch.allclose(read.positions, motion.positions[:, keep], atol=1e-12)


def test_npy_round_trip(tmp_path):
    positions = sample_motion().positions
    read = read_npy(write_npy(tmp_path / "clip.npy", positions))
    assert read.shape == (8, 22, 3)
    assert torch.allclose(read, positions, atol=1e-6)  # stored as float32


def _bvh_text(tmp_path):
    return write_bvh(tmp_path / "good.bvh", sample_motion(frames=2)).read_text()


def _replace_first_frame_value(text, value):
    head, frames = text.split("Frame Time: ")
    lines = frames.split("\n")
    values = lines[1].split()
    values[5] = value
    lines[1] = " ".join(values)
    return head + "Frame Time: " + "\n".join(lines)


BAD_BVH = {
    "missing channels": (
        lambda t: t.replace(
            "CHANNELS 3 Zrotation Xrotation Yrotation", "CHANNELS 2 Zrotation Xrotation", 1
        ),
        "missing channels ['Yrotation']",
    ),
    "root without position": (
        lambda t: t.replace("CHANNELS 6 Xposition Yposition Zposition", "CHANNELS 3", 1),
        "missing channels ['Xposition'",
    ),
    "unknown joint": (lambda t: t.replace("JOINT left_knee", "JOINT LeftLeg"), "unknown joints"),
    "another skeleton": (
        lambda t: (
            t.replace("JOINT left_wrist", "JOINT left_wrist_x")
            .replace("JOINT right_wrist", "JOINT left_wrist")
            .replace("JOINT left_wrist_x", "JOINT right_wrist")
        ),
        "hangs from",
    ),
    "NaN frame": (lambda t: _replace_first_frame_value(t, "nan"), "frame 0 has non-finite"),
    "zero-length clip": (
        lambda t: t.split("Frames:")[0] + "Frames: 0\nFrame Time: 0.05\n",
        "zero-length clip",
    ),
    "truncated frames": (
        lambda t: t.rsplit("\n", 2)[0],
        "2 frames of 69 channels need 138 values, found 69",
    ),
    "text value": (lambda t: _replace_first_frame_value(t, "abc"), "must all be numbers"),
    "bad frame time": (lambda t: t.replace("Frame Time: ", "Frame Time: -"), "frame time"),
    "not a bvh": (lambda t: "hello", "expected 'HIERARCHY'"),
    "cut hierarchy": (lambda t: t[:200], "ends early"),
}


@pytest.mark.parametrize("case", sorted(BAD_BVH))
def test_bad_bvh_raises_one_input_error_naming_the_file(tmp_path, case):
    change, message = BAD_BVH[case]
    path = tmp_path / "bad.bvh"
    path.write_text(change(_bvh_text(tmp_path)))
    with pytest.raises(InputError) as error:
        read_bvh(path)
    text = str(error.value)
    assert text.startswith(f"{path}: ") and message in text and "\n" not in text


def test_missing_bvh_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="cannot be read"):
        read_bvh(tmp_path / "nothing.bvh")


BAD_NPY = {
    "wrong shape": (np.zeros((4, 21, 3)), "shape [T, 22, 3], got [4, 21, 3]"),
    "two dimensions": (np.zeros((4, 66)), "got [4, 66]"),
    "zero-length clip": (np.zeros((0, 22, 3)), "zero-length clip"),
    "NaN frame": (
        np.where(np.arange(5)[:, None, None] == 3, np.nan, np.zeros((5, 22, 3))),
        "frame 3 has non-finite",
    ),
    "strings": (np.full((2, 22, 3), "a"), "expected real numbers"),
}


@pytest.mark.parametrize("case", sorted(BAD_NPY))
def test_bad_npy_raises_one_input_error_naming_the_file(tmp_path, case):
    array, message = BAD_NPY[case]
    path = tmp_path / "bad.npy"
    np.save(path, array)
    with pytest.raises(InputError) as error:
        read_npy(path)
    assert str(error.value).startswith(f"{path}: ") and message in str(error.value)


def test_npy_that_is_not_an_array_is_an_input_error(tmp_path):
    path = tmp_path / "bad.npy"
    path.write_text("not numpy")
    with pytest.raises(InputError, match=r"cannot be read as a \.npy"):
        read_npy(path)
