"""Motion files: BVH (read and write) and ``.npy`` joint arrays ``[T, 22, 3]``.

BVH is read and written here rather than with bvhio (1.5.4, checked): bvhio keeps every value in
float32 PyGLM vectors (10.123456789 degrees comes back as 10.123455, a joint near 90 degrees moves
by 3e-3 degrees per round trip), and a file with fewer frames than it declares makes its reader
loop forever at the end of the file. The format is small: a joint hierarchy with offsets and
channel lists, then one line of channel values per frame.

Every reader checks its input and raises `polydiff.core.errors.InputError` naming the file and
the problem (missing channels, unknown joints or another skeleton, NaN frames, empty clips,
wrong array shapes).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from polydiff.core.errors import InputError
from polydiff.core.io import atomic_path
from polydiff.motion.features import features_to_positions
from polydiff.motion.rotations import axis_rotation, euler_to_matrix, matrix_to_euler
from polydiff.motion.skeleton import (
    Skeleton,
    bone_offsets_from_positions,
    forward_kinematics,
    inverse_kinematics,
    smpl22,
)

ROTATION_CHANNELS = ("Xrotation", "Yrotation", "Zrotation")
POSITION_CHANNELS = ("Xposition", "Yposition", "Zposition")
WRITE_ORDER = "ZXY"  # rotation channel order written (the most common one in mocap files)


@dataclass
class Motion:
    """A clip on a 22-joint skeleton: root positions ``[T, 3]``, local rotations
    ``[T, J, 3, 3]`` (float64), frames per second."""

    root: Tensor
    rotations: Tensor
    skeleton: Skeleton
    fps: float

    @property
    def positions(self) -> Tensor:
        """Joint positions ``[T, J, 3]`` by forward kinematics."""
        return forward_kinematics(self.skeleton, self.root, self.rotations)

    def resampled(self, fps: float) -> Motion:
        """The same motion at ``fps`` frames per second, by taking the nearest frame."""
        duration = len(self.root) / self.fps
        times = torch.arange(max(int(duration * fps + 1e-9), 1)) / fps
        index = (times * self.fps).round().long().clamp_max(len(self.root) - 1)
        return Motion(self.root[index], self.rotations[index], self.skeleton, float(fps))

    @classmethod
    def from_positions(
        cls, positions: Tensor, fps: float, skeleton: Skeleton | None = None
    ) -> Motion:
        """A motion whose bones follow joint positions ``[T, J, 3]`` (IK, no twist); without a
        skeleton the bone lengths are measured in the first frame."""
        positions = torch.as_tensor(positions, dtype=torch.float64)
        if skeleton is None:
            skeleton = smpl22()
            skeleton = skeleton.with_offsets(bone_offsets_from_positions(skeleton, positions[0]))
        rotations = inverse_kinematics(skeleton, positions)
        return cls(positions[:, 0].clone(), rotations, skeleton, float(fps))

    @classmethod
    def from_features(
        cls, features: Tensor, fps: float, skeleton: Skeleton | None = None
    ) -> Motion:
        """A motion for BVH from features ``[T, D]`` (e.g. generated ones): the joint positions
        they encode, put on the skeleton by IK. Positions are used rather than the 6D part, since
        a generated sample may not keep the two consistent."""
        positions = features_to_positions(torch.as_tensor(features, dtype=torch.float64))
        return cls.from_positions(positions, fps, skeleton or smpl22())


@dataclass
class _Joint:
    name: str
    parent: int
    offset: list[float]
    channels: list[str]


class _Tokens:
    """Whitespace tokens of a BVH file with the reading position, for error messages."""

    def __init__(self, path: str, text: str) -> None:
        self.path, self.items, self.at = path, text.split(), 0

    def fail(self, problem: str) -> InputError:
        return InputError(f"{self.path}: {problem}")

    def next(self, what: str) -> str:
        if self.at >= len(self.items):
            raise self.fail(f"ends early, expected {what}")
        self.at += 1
        return self.items[self.at - 1]

    def expect(self, *words: str) -> None:
        for word in words:
            found = self.next(word)
            if found != word:
                raise self.fail(f"expected {word!r}, found {found!r}")

    def number(self, what: str) -> float:
        found = self.next(what)
        try:
            return float(found)
        except ValueError:
            raise self.fail(f"{what} must be a number, found {found!r}") from None


def _parse_joint(tokens: _Tokens, joints: list[_Joint], parent: int) -> None:
    name = tokens.next("a joint name")
    tokens.expect("{", "OFFSET")
    offset = [tokens.number(f"the offset of joint {name!r}") for _ in range(3)]
    tokens.expect("CHANNELS")
    count = tokens.number(f"the channel count of joint {name!r}")
    channels = [tokens.next(f"the channels of joint {name!r}") for _ in range(int(count))]
    joints.append(_Joint(name, parent, offset, channels))
    index = len(joints) - 1
    while True:
        word = tokens.next(f"'}}' closing joint {name!r}")
        if word == "JOINT":
            _parse_joint(tokens, joints, index)
        elif word == "End":
            tokens.expect("Site", "{", "OFFSET")
            for _ in range(3):
                tokens.number(f"the end site of joint {name!r}")
            tokens.expect("}")
        elif word == "}":
            return
        else:
            raise tokens.fail(f"unexpected {word!r} in joint {name!r}")


def _match_skeleton(
    path: str, joints: list[_Joint], skeleton: Skeleton, drop_others: bool = False
) -> list[int]:
    """For each skeleton joint, its index in the file; the file must have the same tree (with
    ``drop_others``: once the joints of other names are taken out)."""
    lookup = {name.lower(): j for j, name in enumerate(skeleton.names)}
    unknown = [joint.name for joint in joints if joint.name.lower() not in lookup]
    if unknown and not drop_others:
        raise InputError(
            f"{path}: unknown joints {unknown[:5]} (another skeleton?); expected the "
            f"{skeleton.n_joints} joints {', '.join(skeleton.names)} (rename with joint_map)"
        )
    where: dict[int, int] = {}
    for i, joint in enumerate(joints):
        j = lookup.get(joint.name.lower())
        if j is not None and j in where:
            raise InputError(f"{path}: joint {joint.name!r} appears twice")
        if j is not None:
            where[j] = i
    missing = [skeleton.names[j] for j in range(skeleton.n_joints) if j not in where]
    if missing:
        raise InputError(
            f"{path}: lacks the joints {missing} of the {skeleton.n_joints}-joint body"
        )
    for j, parent in enumerate(skeleton.parents):
        found = joints[where[j]].parent
        while found >= 0 and joints[found].name.lower() not in lookup:  # a dropped joint
            found = joints[found].parent
        found_name = joints[found].name if found >= 0 else None
        wanted = skeleton.names[parent] if parent >= 0 else None
        if (found_name or "").lower() != (wanted or ""):
            raise InputError(
                f"{path}: joint {skeleton.names[j]!r} hangs from {found_name!r}, expected "
                f"{wanted!r} (another skeleton)"
            )
    return [where[j] for j in range(skeleton.n_joints)]


def _check_channels(path: str, joint: _Joint, root: bool, rotates: bool = True) -> None:
    needed = (ROTATION_CHANNELS if rotates else ()) + (POSITION_CHANNELS if root else ())
    missing = [c for c in needed if c not in joint.channels]
    unknown = [c for c in joint.channels if c not in ROTATION_CHANNELS + POSITION_CHANNELS]
    if missing or unknown or len(set(joint.channels)) < len(joint.channels):
        problem = f"missing channels {missing}" if missing else f"bad channels {joint.channels}"
        raise InputError(f"{path}: joint {joint.name!r} has {problem}; it needs {list(needed)}")


def read_bvh(
    path: str | os.PathLike,
    *,
    scale: float = 1.0,
    joint_map: Mapping[str, str] | None = None,
    skeleton: Skeleton | None = None,
    drop_other_joints: bool = False,
) -> Motion:
    """Read a BVH file of the 22-joint body (joint names as in `skeleton.JOINT_NAMES`, any case,
    or renamed by ``joint_map`` {file name: our name}; any rotation channel order). Lengths are
    multiplied by ``scale`` (0.01 for files in centimetres). The bone offsets are the file's.
    Non-root position channels must stay at the joint's offset (some exporters write them).

    ``drop_other_joints``: a richer skeleton (extra spine joints, fingers, toe ends: CMU,
    Mixamo) is accepted when its 22 named joints form our tree once the others are taken out;
    the file's joint positions are then put on our skeleton by IK (`Motion.from_positions`,
    bone lengths measured in the first frame), so twist about a bone is lost."""
    where = str(path)
    skeleton = skeleton or smpl22()
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{where}: cannot be read as a BVH text file ({error})") from None
    tokens = _Tokens(where, text)
    tokens.expect("HIERARCHY", "ROOT")
    joints: list[_Joint] = []
    _parse_joint(tokens, joints, -1)
    for joint in joints:
        joint.name = (joint_map or {}).get(joint.name, joint.name)
    order = _match_skeleton(where, joints, skeleton, drop_other_joints)
    for i, joint in enumerate(joints):
        _check_channels(where, joint, root=i == 0, rotates=not drop_other_joints)
    tokens.expect("MOTION", "Frames:")
    frames = tokens.number("the frame count")
    tokens.expect("Frame", "Time:")
    frame_time = tokens.number("the frame time")
    if frames != int(frames) or frames < 0:
        raise InputError(f"{where}: the frame count must be a whole number, got {frames:g}")
    if frames == 0:
        raise InputError(f"{where}: has no frames (a zero-length clip)")
    if not (math.isfinite(frame_time) and frame_time > 0):
        raise InputError(f"{where}: the frame time must be positive, got {frame_time:g}")
    values = _frame_values(where, tokens, int(frames), sum(len(j.channels) for j in joints))
    if drop_other_joints:
        positions = _file_positions(joints, values, scale)[:, order]
        measured = skeleton.with_offsets(bone_offsets_from_positions(skeleton, positions[0]))
        return Motion.from_positions(positions, 1.0 / frame_time, measured)
    root, rotations = _decode_channels(where, joints, order, values, scale)
    offsets = torch.tensor([joints[i].offset for i in order], dtype=torch.float64) * scale
    return Motion(root, rotations, skeleton.with_offsets(offsets), 1.0 / frame_time)


def _frame_values(where: str, tokens: _Tokens, frames: int, channels: int) -> np.ndarray:
    rest = tokens.items[tokens.at :]
    if len(rest) != frames * channels:
        raise InputError(
            f"{where}: {frames} frames of {channels} channels need {frames * channels} values, "
            f"found {len(rest)}"
        )
    try:
        values = np.asarray(rest, dtype=np.float64).reshape(frames, channels)
    except ValueError:
        raise InputError(f"{where}: the frame values must all be numbers") from None
    bad = np.flatnonzero(~np.isfinite(values).all(1))
    if bad.size:
        raise InputError(f"{where}: frame {bad[0]} has non-finite values (NaN or inf)")
    return values


def _decode_channels(
    where: str, joints: list[_Joint], order: list[int], values: np.ndarray, scale: float
) -> tuple[Tensor, Tensor]:
    data = torch.from_numpy(values)
    rotations, root = [], None
    start = 0
    columns: dict[int, dict[str, Tensor]] = {}
    for i, joint in enumerate(joints):
        columns[i] = {c: data[:, start + k] for k, c in enumerate(joint.channels)}
        start += len(joint.channels)
    for rank, i in enumerate(order):
        joint, cols = joints[i], columns[i]
        if rank == 0:
            root = torch.stack([cols[c] for c in POSITION_CHANNELS], -1) * scale
        elif POSITION_CHANNELS[0] in cols:
            moved = torch.stack([cols[c] for c in POSITION_CHANNELS], -1)
            if not torch.allclose(moved, torch.tensor(joint.offset, dtype=moved.dtype)):
                raise InputError(
                    f"{where}: joint {joint.name!r} translates away from its offset; only the "
                    "root may move (a skeleton with stretching bones)"
                )
        rotation_order = "".join(c[0] for c in joint.channels if c in ROTATION_CHANNELS)
        angles = torch.stack([cols[f"{a}rotation"] for a in rotation_order], -1)
        rotations.append(euler_to_matrix(torch.deg2rad(angles), rotation_order))
    assert root is not None
    return root, torch.stack(rotations, 1)


def _file_positions(joints: list[_Joint], values: np.ndarray, scale: float) -> Tensor:
    """World positions ``[T, N, 3]`` of every joint of the file (forward kinematics over its own
    tree, any channels: position channels replace the offset, missing rotations are zero)."""
    data = torch.from_numpy(values)
    frames = len(data)
    start, world, positions = 0, [], []
    for joint in joints:
        cols = {c: data[:, start + k] for k, c in enumerate(joint.channels)}
        start += len(joint.channels)
        move = (
            torch.stack(
                [
                    cols.get(c, torch.full((frames,), o, dtype=data.dtype))
                    for c, o in zip(POSITION_CHANNELS, joint.offset, strict=True)
                ],
                -1,
            )
            * scale
        )
        rotation = torch.eye(3, dtype=data.dtype).expand(frames, 3, 3)
        for channel in joint.channels:
            if channel in ROTATION_CHANNELS:
                rotation = rotation @ axis_rotation(channel[0], torch.deg2rad(cols[channel]))
        if joint.parent < 0:
            world.append(rotation)
            positions.append(move)
        else:
            parent = world[joint.parent]
            world.append(parent @ rotation)
            positions.append(positions[joint.parent] + (parent @ move.unsqueeze(-1))[..., 0])
    return torch.stack(positions, 1)


def _bvh_number(x: float) -> str:
    return repr(float(x))  # shortest text that reads back to the same float64


def write_bvh(path: str | os.PathLike, motion: Motion) -> Path:
    """Write ``motion`` as BVH (root: position + ZXY rotation channels, others ZXY rotation;
    float64 values written exactly), atomically. Returns the path."""
    skeleton = motion.skeleton
    lines = ["HIERARCHY"]
    angles = torch.rad2deg(matrix_to_euler(motion.rotations.to(torch.float64), WRITE_ORDER))
    rotation_channels = " ".join(f"{a}rotation" for a in WRITE_ORDER)

    def add_joint(j: int, depth: int) -> None:
        pad = "  " * depth
        offset = " ".join(_bvh_number(x) for x in skeleton.offsets[j].tolist())
        head = "ROOT" if j == 0 else "JOINT"
        channels = f"6 {' '.join(POSITION_CHANNELS)} " if j == 0 else "3 "
        lines.extend([f"{pad}{head} {skeleton.names[j]}", f"{pad}{{", f"{pad}  OFFSET {offset}"])
        lines.append(f"{pad}  CHANNELS {channels}{rotation_channels}")
        children = skeleton.children(j)
        for child in children:
            add_joint(child, depth + 1)
        if not children:  # an end site half a bone further along the bone
            tip = " ".join(_bvh_number(x) for x in (skeleton.offsets[j] * 0.5).tolist())
            lines.extend([f"{pad}  End Site", f"{pad}  {{", f"{pad}    OFFSET {tip}", f"{pad}  }}"])
        lines.append(f"{pad}}}")

    add_joint(0, 0)
    order = _depth_first(skeleton)
    lines += ["MOTION", f"Frames: {len(motion.root)}", f"Frame Time: {_bvh_number(1 / motion.fps)}"]
    for t in range(len(motion.root)):
        values = motion.root[t].tolist() + angles[t, order].flatten().tolist()
        lines.append(" ".join(_bvh_number(v) for v in values))
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return Path(path)


def _depth_first(skeleton: Skeleton) -> list[int]:
    order: list[int] = []

    def visit(j: int) -> None:
        order.append(j)
        for child in skeleton.children(j):
            visit(child)

    visit(0)
    return order


def read_npy(path: str | os.PathLike, *, n_joints: int = 22) -> Tensor:
    """Joint positions ``[T, n_joints, 3]`` (float64) from a ``.npy`` array, checked."""
    where = str(path)
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise InputError(f"{where}: cannot be read as a .npy array ({error})") from None
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise InputError(f"{where}: expected real numbers, got dtype {array.dtype}")
    if array.ndim != 3 or array.shape[1:] != (n_joints, 3):
        raise InputError(
            f"{where}: expected joint positions of shape [T, {n_joints}, 3], got "
            f"{list(array.shape)}"
        )
    if array.shape[0] == 0:
        raise InputError(f"{where}: has no frames (a zero-length clip)")
    bad = np.flatnonzero(~np.isfinite(array).reshape(len(array), -1).all(1))
    if bad.size:
        raise InputError(f"{where}: frame {bad[0]} has non-finite values (NaN or inf)")
    return torch.from_numpy(array.astype(np.float64))


def write_npy(path: str | os.PathLike, positions: Tensor) -> Path:
    """Save joint positions ``[T, J, 3]`` as a float32 ``.npy`` file, atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, torch.as_tensor(positions).detach().cpu().numpy().astype(np.float32))
    return Path(path)


__all__ = ["Motion", "read_bvh", "read_npy", "write_bvh", "write_npy"]
