"""The built-in offline corpus: procedurally generated gaits and actions on the 22-joint skeleton,
with action and style labels, deterministic by seed, and a windowed torch Dataset of features.

How a clip is made (no mocap ships offline): the pelvis follows a path (speed, sideways speed,
turn rate), each foot follows footsteps planted at the pelvis' position in the middle of its
stance phase (fixed while in stance, so planted feet do not slide), swinging between them with a
lift; the pelvis is lowered where needed so every ankle target is in reach, the legs are solved
with analytic two-bone IK (knees towards the foot's heading), arms swing against the legs, and
the joint positions come from forward kinematics, so bone lengths never change.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from polydiff.core.errors import InputError
from polydiff.motion.features import canonicalize, motion_to_features
from polydiff.motion.io import Motion, read_bvh, write_bvh
from polydiff.motion.rotations import axis_rotation
from polydiff.motion.skeleton import Skeleton, forward_kinematics, smpl22

ACTIONS = ("idle", "walk", "run", "jump", "turn", "sidestep", "backward")
STYLES = ("neutral", "energetic", "tired")
FPS = 20.0

# Per-style modifiers: speed and cadence scale, arm swing (rad), step lift (m), spine lean (rad),
# pelvis height change (m), vertical bounce scale.
_STYLE = {
    "neutral": dict(speed=1.0, cadence=1.0, arms=0.35, lift=0.10, lean=0.05, height=0.0, bob=1.0),
    "energetic": dict(
        speed=1.2, cadence=1.12, arms=0.6, lift=0.14, lean=-0.05, height=0.0, bob=1.6
    ),
    "tired": dict(speed=0.7, cadence=0.85, arms=0.12, lift=0.08, lean=0.3, height=-0.03, bob=0.5),
}
# Per-action gait: forward and sideways speed (m/s), turn rate (rad/s), cycle (s), stance fraction.
_GAIT = {
    "walk": dict(forward=1.1, side=0.0, turn=0.25, cycle=1.0, duty=0.6),
    "run": dict(forward=2.4, side=0.0, turn=0.2, cycle=0.7, duty=0.38),
    "turn": dict(forward=0.05, side=0.0, turn=1.6, cycle=0.9, duty=0.65),
    "sidestep": dict(forward=0.0, side=0.45, turn=0.0, cycle=1.0, duty=0.6),
    "backward": dict(forward=-0.7, side=0.0, turn=0.15, cycle=1.0, duty=0.62),
}
_STANCE_WIDTH = 0.09
_REACH = 0.995  # of the full leg length, so the knee never locks straight


@dataclass
class Clip:
    """One generated clip: joint positions ``[T, 22, 3]``, local rotations ``[T, 22, 3, 3]``,
    root positions ``[T, 3]`` (float64), labels and frame rate."""

    positions: Tensor
    rotations: Tensor
    root: Tensor
    action: str
    style: str
    fps: float = FPS
    skeleton: Skeleton | None = None  # the bone offsets of a read clip; None: smpl22()

    def motion(self, skeleton: Skeleton | None = None) -> Motion:
        return Motion(self.root, self.rotations, skeleton or self.skeleton or smpl22(), self.fps)


def action_index(name: str) -> int:
    """Index of an action label; an unknown one is an InputError listing the known ones."""
    if name not in ACTIONS:
        raise InputError(f"action: unknown label {name!r}; known: {', '.join(ACTIONS)}")
    return ACTIONS.index(name)


def style_index(name: str) -> int:
    if name not in STYLES:
        raise InputError(f"style: unknown label {name!r}; known: {', '.join(STYLES)}")
    return STYLES.index(name)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


class _Path:
    """Pelvis heading and horizontal position as functions of time (integrated on a fine grid
    that extends past the clip, since footsteps are placed at mid-stance times)."""

    def __init__(self, forward, side, turn, heading0, rng, seconds):
        self.grid = np.arange(-4.0, seconds + 4.0, 0.005)
        wobble = rng.uniform(0, 2 * np.pi, 3)
        speed = 1.0 + 0.08 * np.sin(2 * np.pi * self.grid / 3.1 + wobble[0])
        rate = turn * (1.0 + 0.3 * np.sin(2 * np.pi * self.grid / 4.3 + wobble[1]))
        self.heading_grid = heading0 + np.cumsum(rate) * 0.005
        h = self.heading_grid
        velocity = forward * speed[:, None] * np.stack([np.sin(h), np.cos(h)], -1)
        velocity += side * speed[:, None] * np.stack([np.cos(h), -np.sin(h)], -1)
        self.xz_grid = np.cumsum(velocity, 0) * 0.005
        self.xz_grid -= self.xz(np.zeros(1))[0]

    def heading(self, t: np.ndarray) -> np.ndarray:
        return np.interp(t, self.grid, self.heading_grid)

    def xz(self, t: np.ndarray) -> np.ndarray:
        return np.stack([np.interp(t, self.grid, self.xz_grid[:, k]) for k in (0, 1)], -1)


def _left(heading: np.ndarray) -> np.ndarray:
    """Horizontal (x, z) unit vector to the body's left for a heading (0 = facing +z)."""
    return np.stack([np.cos(heading), -np.sin(heading)], -1)


def _footstep(path: _Path, mid: np.ndarray, side: float) -> tuple[np.ndarray, np.ndarray]:
    """Where a foot plants for the stance phase centred at ``mid``: beside the pelvis."""
    heading = path.heading(mid)
    return path.xz(mid) + side * _STANCE_WIDTH * _left(heading), heading


def _gait_feet(path: _Path, t, cycle, duty, lift, rest_ankle):
    """Ankle targets (x, y, z) and foot headings of both feet stepping along ``path``."""
    targets, yaws = [], []
    for side, offset in ((1.0, 0.0), (-1.0, 0.5)):
        u = t / cycle + offset
        k = np.floor(u)
        phase = u - k
        here, yaw_here = _footstep(path, (k + duty / 2 - offset) * cycle, side)
        there, yaw_there = _footstep(path, (k + 1 + duty / 2 - offset) * cycle, side)
        swing = np.clip((phase - duty) / (1.0 - duty), 0.0, 1.0)
        # lift first, move later: a foot leaving or reaching the floor barely slides
        progress = _smoothstep((swing - 0.2) / 0.6)
        xz = here + progress[:, None] * (there - here)
        y = rest_ankle + lift * np.sin(np.pi * swing)
        targets.append(np.stack([xz[:, 0], y, xz[:, 1]], -1))
        yaws.append(yaw_here + progress * (yaw_there - yaw_here))
    return targets, yaws


def _plan(action: str, style: dict, rng: np.random.Generator, t: np.ndarray, rest_ankle: float):
    """Pelvis path (xz, nominal height, heading, twist), ankle targets, foot headings and the arm
    swing phase of one action."""
    seconds = float(t[-1]) + 1.0
    heading0 = rng.uniform(-np.pi, np.pi)
    stand = 0.915 + style["height"]
    if action in _GAIT:
        gait = _GAIT[action]
        jitter = rng.uniform(0.9, 1.1, 3)
        speed = style["speed"] * jitter[0]
        turn = gait["turn"] * rng.choice([-1.0, 1.0]) * jitter[1]
        side = gait["side"] * rng.choice([-1.0, 1.0])
        path = _Path(gait["forward"] * speed, side * speed, turn, heading0, rng, seconds)
        cycle = gait["cycle"] / style["cadence"] * jitter[2]
        lift = style["lift"] * (1.3 if action == "run" else 1.0)
        feet, yaws = _gait_feet(path, t, cycle, gait["duty"], lift, rest_ankle)
        phase = 2 * np.pi * t / cycle
        bob = 0.02 * style["bob"] * (2.0 if action == "run" else 1.0)
        height = stand + bob * np.cos(2 * phase) - (0.05 if action == "run" else 0.0)
        twist = 0.08 * np.sin(phase) * (1.0 if action != "turn" else 0.3)
        return path.xz(t), height, path.heading(t), twist, feet, yaws, phase
    path = _Path(0.0, 0.0, 0.0, heading0, rng, seconds)
    heading = path.heading(t)
    left = _left(heading)
    if action == "idle":
        sway = rng.uniform(0, 2 * np.pi, 2)
        shift = 0.03 * np.sin(2 * np.pi * t / 3.0 + sway[0])[:, None] * left
        shift += 0.015 * np.sin(2 * np.pi * t / 4.5 + sway[1])[:, None] * _left(heading + np.pi / 2)
        height = stand - 0.01 + 0.006 * np.sin(2 * np.pi * t / 3.7) * style["bob"]
        feet = [
            np.stack(
                [
                    s * _STANCE_WIDTH * left[:, 0],
                    np.full_like(t, rest_ankle),
                    s * _STANCE_WIDTH * left[:, 1],
                ],
                -1,
            )
            for s in (1.0, -1.0)
        ]
        return shift, height, heading, 0.03 * np.sin(t), feet, [heading, heading], 0.4 * t
    if action == "jump":
        return _jump_plan(style, rng, t, heading, stand, rest_ankle)
    raise InputError(f"action: unknown label {action!r}; known: {', '.join(ACTIONS)}")


def _jump_plan(style, rng, t, heading, stand, rest_ankle):
    """Repeated two-footed jumps: crouch, push, a ballistic flight, land, absorb, stand."""
    gravity, flight = 9.81, rng.uniform(0.38, 0.5) * (1.1 if style["speed"] > 1 else 1.0)
    distance = rng.uniform(0.0, 0.7) * style["speed"]
    period = 0.45 + 0.15 + flight + 0.5 + 0.3
    start = rng.uniform(0.0, 0.4)
    forward = np.stack([np.sin(heading), np.cos(heading)], -1)
    local = (t - start) % period
    count = np.floor((t - start) / period)
    takeoff, land = 0.6, 0.6 + flight
    progress = _smoothstep((local - takeoff) / flight)
    travelled = (count + progress) * distance
    xz = travelled[:, None] * forward
    crouch = 0.18 * np.sin(np.pi * np.clip(local / 0.6, 0, 1)) ** 2
    absorb = 0.14 * np.sin(np.pi * np.clip((local - land) / 0.5, 0, 1))
    tau = np.clip(local - takeoff, 0.0, flight)
    rise = gravity * tau * (flight - tau) / 2.0  # ballistic: up and back down in `flight` s
    height = stand - crouch - absorb + rise
    in_air = (local > takeoff) & (local < land)
    tuck = 0.1 * np.sin(np.pi * tau / flight) * in_air
    feet = []
    for side in (1.0, -1.0):
        foot_xz = xz + side * _STANCE_WIDTH * _left(heading)
        feet.append(np.stack([foot_xz[:, 0], rest_ankle + rise + tuck, foot_xz[:, 1]], -1))
    arms = np.where(local < takeoff, -1.2 * crouch / 0.18, 1.5 * np.sin(np.pi * tau / flight))
    return xz, height, heading, 0.0 * t, feet, [heading, heading], arms


def _two_bone_ik(hip, target, pole, thigh, shin):
    """World rotations of the thigh and the shin (rest bones point down -y) putting the ankle at
    ``target`` with the knee bending towards ``pole`` (law of cosines)."""
    reach = target - hip
    distance = np.linalg.norm(reach, axis=-1, keepdims=True)
    distance = np.clip(distance, abs(thigh - shin) + 1e-6, (thigh + shin) * _REACH)
    u = reach / np.linalg.norm(reach, axis=-1, keepdims=True)
    cos_hip = (thigh**2 + distance**2 - shin**2) / (2 * thigh * distance)
    sin_hip = np.sqrt(np.clip(1 - cos_hip**2, 0, 1))
    w = pole - (pole * u).sum(-1, keepdims=True) * u
    w /= np.linalg.norm(w, axis=-1, keepdims=True)
    knee = hip + thigh * (cos_hip * u + sin_hip * w)
    ankle = hip + distance * u
    return _bone_frame(knee - hip, pole), _bone_frame(ankle - knee, pole)


def _bone_frame(bone: np.ndarray, pole: np.ndarray) -> np.ndarray:
    """Rotation whose -y axis runs along ``bone`` and whose z axis leans towards ``pole``."""
    y = -bone / np.linalg.norm(bone, axis=-1, keepdims=True)
    z = pole - (pole * y).sum(-1, keepdims=True) * y
    z /= np.linalg.norm(z, axis=-1, keepdims=True)
    return np.stack([np.cross(y, z), y, z], -1)


def _rot(axis: str, angle) -> np.ndarray:
    return axis_rotation(axis, torch.as_tensor(np.asarray(angle, dtype=np.float64))).numpy()


def generate_clip(
    action: str, style: str = "neutral", *, seconds: float = 4.0, fps: float = FPS, seed: int = 0
) -> Clip:
    """One clip of ``action`` in ``style`` (see ACTIONS, STYLES), the same for the same seed."""
    action_index(action)
    params = _STYLE[STYLES[style_index(style)]]
    rng = np.random.default_rng([seed, ACTIONS.index(action), STYLES.index(style)])
    skeleton = smpl22()
    offsets = skeleton.offsets.numpy()
    t = np.arange(round(seconds * fps)) / fps
    rest_ankle = float(skeleton.rest_positions()[7, 1])
    xz, height, heading, twist, feet, foot_yaws, arm_phase = _plan(
        action, params, rng, t, rest_ankle
    )
    pelvis_rotation = _rot("Y", heading + twist)
    # lower the pelvis where an ankle target would be out of reach
    leg = (np.linalg.norm(offsets[4]) + np.linalg.norm(offsets[7])) * _REACH - 1e-6
    hips = [xz + (pelvis_rotation @ offsets[j])[:, [0, 2]] for j in (1, 2)]
    for hip, foot in zip(hips, feet, strict=True):
        across = np.linalg.norm(hip - foot[:, [0, 2]], axis=-1)
        reach = np.sqrt(np.clip(leg**2 - across**2, 0, None))
        height = np.minimum(height, foot[:, 1] + reach - offsets[1, 1])
    root = np.stack([xz[:, 0], height, xz[:, 1]], -1)
    local = np.broadcast_to(np.eye(3), (len(t), 22, 3, 3)).copy()
    local[:, 0] = pelvis_rotation
    # spine: forward lean shared by three joints, undoing the pelvis twist towards the shoulders
    lean = params["lean"] + (0.12 if action == "run" else 0.0)
    for j in (3, 6, 9):
        local[:, j] = _rot("X", np.full_like(t, lean / 3)) @ _rot("Y", -twist / 3)
    local[:, 15] = _rot("X", np.full_like(t, -lean / 2))  # head stays level
    for j, hip_joint in ((0, 1), (1, 2)):
        hip = root + pelvis_rotation @ offsets[hip_joint]
        pole = np.stack([np.sin(foot_yaws[j]), np.zeros_like(t), np.cos(foot_yaws[j])], -1)
        thigh, shin = _two_bone_ik(hip, feet[j], pole, -offsets[4, 1], -offsets[7, 1])
        foot = _rot("Y", foot_yaws[j])
        local[:, hip_joint] = pelvis_rotation.transpose(0, 2, 1) @ thigh
        local[:, hip_joint + 3] = thigh.transpose(0, 2, 1) @ shin
        local[:, hip_joint + 6] = shin.transpose(0, 2, 1) @ foot
    _pose_arms(local, action, params, arm_phase)
    rotations = torch.from_numpy(local)
    root_t = torch.from_numpy(root)
    positions = forward_kinematics(skeleton, root_t, rotations)
    return Clip(positions, rotations, root_t, action, style, fps)


def _pose_arms(local: np.ndarray, action: str, style: dict, phase: np.ndarray) -> None:
    """Arms hang from the T-pose and swing against the legs; elbows bend more when running."""
    if action == "jump":
        swing, bend = phase * 0.6, np.full_like(phase, 0.4)
    elif action == "idle":
        swing, bend = 0.05 * np.sin(phase), np.full_like(phase, 0.25)
    else:
        # phase 0: the left foot lands ahead, so the left arm is furthest back
        swing = -style["arms"] * np.cos(phase) * (1.6 if action == "run" else 1.0)
        bend = np.full_like(phase, 1.3 if action == "run" else 0.3) + 0.15 * np.cos(phase)
    down = 1.35  # from horizontal to hanging, slightly away from the body
    for shoulder, elbow, side in ((16, 18, 1.0), (17, 19, -1.0)):
        # a positive x turn swings a hanging arm backwards; left arm goes with the right leg
        local[:, shoulder] = _rot("X", -side * swing) @ _rot("Z", np.full_like(phase, -side * down))
        local[:, elbow] = _rot("Y", -side * bend)


def generate_corpus(
    clips_per_label: int = 2,
    *,
    seconds: float = 4.0,
    fps: float = FPS,
    seed: int = 0,
    actions: tuple[str, ...] = ACTIONS,
    styles: tuple[str, ...] = STYLES,
) -> list[Clip]:
    """``clips_per_label`` clips of every (action, style) pair, deterministic by ``seed``."""
    return [
        generate_clip(action, style, seconds=seconds, fps=fps, seed=seed * 100003 + k)
        for action in actions
        for style in styles
        for k in range(clips_per_label)
    ]


def clips_from_bvh(
    paths: list[str | os.PathLike],
    action: str,
    style: str = "neutral",
    *,
    scale: float = 1.0,
    joint_map: Mapping[str, str] | None = None,
    drop_other_joints: bool = False,
    fps: float = FPS,
) -> list[Clip]:
    """Clips from BVH files of the 22-joint body (see `read_bvh` for ``scale``, ``joint_map``
    and ``drop_other_joints``), labelled ``action`` / ``style``, resampled to ``fps`` by taking
    the nearest frame (the features' contact threshold assumes 20 fps)."""
    action_index(action)
    style_index(style)
    clips = []
    for path in paths:
        motion = read_bvh(
            path, scale=scale, joint_map=joint_map, drop_other_joints=drop_other_joints
        )
        motion = motion.resampled(fps)
        clip = Clip(motion.positions, motion.rotations, motion.root, action, style, fps)
        clips.append(replace(clip, skeleton=motion.skeleton))
    return clips


def write_corpus(clips: list[Clip], folder: str | os.PathLike) -> dict[str, int]:
    """Write ``clips`` as BVH files ``folder/<action>/<style>/<action>_<style>_<k>.bvh`` (the
    layout `read_corpus` reads back); returns the number of clips per ``"action/style"``."""
    counts: Counter[str] = Counter()
    for clip in clips:
        label = f"{clip.action}/{clip.style}"
        name = f"{clip.action}_{clip.style}_{counts[label]:03d}.bvh"
        target = Path(folder, clip.action, clip.style)
        target.mkdir(parents=True, exist_ok=True)
        write_bvh(target / name, clip.motion())
        counts[label] += 1
    return dict(counts)


def corpus_labels(folder: str | os.PathLike) -> list[tuple[Path, str, str]]:
    """The BVH files of a corpus folder with their (action, style) labels, read from the layout
    ``<action>/<style>/*.bvh`` or ``<action>/*.bvh`` (style neutral); anything else is an
    InputError naming the file."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"{root}: not a folder")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() == ".bvh" and p.is_file())
    if not files:
        raise InputError(f"{root}: no .bvh files (expected <action>/<style>/*.bvh)")
    labelled = []
    for path in files:
        parts = path.relative_to(root).parts[:-1]
        if len(parts) not in (1, 2):
            raise InputError(f"{path}: expected <action>/<style>/*.bvh or <action>/*.bvh")
        action, style = parts[0], parts[1] if len(parts) == 2 else "neutral"
        if action not in ACTIONS:
            raise InputError(
                f"{path}: unknown action folder {action!r}; known: {', '.join(ACTIONS)}"
            )
        if style not in STYLES:
            raise InputError(f"{path}: unknown style folder {style!r}; known: {', '.join(STYLES)}")
        labelled.append((path, action, style))
    return labelled


def read_corpus(
    folder: str | os.PathLike,
    *,
    scale: float = 1.0,
    joint_map: Mapping[str, str] | None = None,
    drop_other_joints: bool = False,
    fps: float = FPS,
) -> list[Clip]:
    """Every BVH of a corpus folder (`corpus_labels`) as labelled clips (`clips_from_bvh`)."""
    options = dict(scale=scale, joint_map=joint_map, drop_other_joints=drop_other_joints, fps=fps)
    return [
        clip
        for path, action, style in corpus_labels(folder)
        for clip in clips_from_bvh([path], action, style, **options)
    ]


def label_counts(clips: list[Clip]) -> dict[str, int]:
    """Number of clips per ``"action/style"``, in the order of ACTIONS and STYLES."""
    counts = Counter(f"{clip.action}/{clip.style}" for clip in clips)
    return {f"{a}/{s}": counts[f"{a}/{s}"] for a in ACTIONS for s in STYLES if counts[f"{a}/{s}"]}


@dataclass
class Normalizer:
    """Per-feature mean and standard deviation (floored, so constant features map to 0)."""

    mean: Tensor
    std: Tensor

    @classmethod
    def fit(cls, features: Tensor, floor: float = 1e-2) -> Normalizer:
        flat = features.reshape(-1, features.shape[-1])
        return cls(flat.mean(0), flat.std(0).clamp_min(floor))

    def normalize(self, features: Tensor) -> Tensor:
        return (features - self.mean.to(features)) / self.std.to(features)

    def denormalize(self, normalized: Tensor) -> Tensor:
        return normalized * self.std.to(normalized) + self.mean.to(normalized)


class MotionDataset(Dataset):
    """Windows of ``window`` feature frames (263-d, mean/std normalised, float32) cut every
    ``stride`` frames from clips, with their action and style indices."""

    def __init__(
        self,
        clips: list[Clip],
        window: int = 40,
        stride: int = 10,
        normalizer: Normalizer | None = None,
    ) -> None:
        windows, actions, styles = [], [], []
        for clip in clips:
            if len(clip.positions) < window + 1:
                raise InputError(
                    f"window: {window} frames need clips of at least {window + 1} frames, "
                    f"got {len(clip.positions)}"
                )
            features = motion_to_features(canonicalize(clip.positions), clip.rotations)
            for start in range(0, len(features) - window + 1, stride):
                windows.append(features[start : start + window])
                actions.append(ACTIONS.index(clip.action))
                styles.append(STYLES.index(clip.style))
        raw = torch.stack(windows)
        self.normalizer = normalizer or Normalizer.fit(raw)
        self.features = self.normalizer.normalize(raw).float()
        self.actions = torch.tensor(actions)
        self.styles = torch.tensor(styles)

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {
            "x": self.features[index],
            "action": self.actions[index],
            "style": self.styles[index],
        }


__all__ = [
    "ACTIONS",
    "FPS",
    "STYLES",
    "Clip",
    "MotionDataset",
    "Normalizer",
    "action_index",
    "clips_from_bvh",
    "corpus_labels",
    "generate_clip",
    "generate_corpus",
    "label_counts",
    "read_corpus",
    "style_index",
    "write_corpus",
]
