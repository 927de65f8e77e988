"""Physical plausibility metrics of joint positions ``[..., T, J, 3]`` (metres, y up, floor at
y = 0), each one value per clip, shape ``[...]``; and the distribution metrics of motion
features (FID, diversity; the features come from `polydiff.motion.encoder`)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from polydiff.core.errors import InputError
from polydiff.motion.skeleton import FOOT_JOINTS

# Contact heights of the foot joints (left ankle, left foot, right ankle, right foot): the
# ankle sits about 5 cm above the toes when the foot is flat.
CONTACT_HEIGHTS = (0.10, 0.05, 0.10, 0.05)
SKATING_STEP = 0.01  # metres per frame (0.2 m/s at 20 fps)


def foot_skating_ratio(
    positions: Tensor,
    *,
    step: float = SKATING_STEP,
    heights: tuple[float, ...] = CONTACT_HEIGHTS,
    feet: tuple[int, ...] = FOOT_JOINTS,
) -> Tensor:
    """Fraction of frame transitions in which a foot joint (7, 10, 8, 11) skates: it is near the
    floor (below its contact height in both frames) yet slides horizontally more than ``step``
    metres (as in GMD, Karunratanakul et al. 2023, with per-frame thresholds)."""
    foot = positions[..., list(feet), :]
    limit = torch.tensor(heights, dtype=foot.dtype, device=foot.device)
    low = foot[..., 1] < limit
    contact = low[..., 1:, :] & low[..., :-1, :]
    slide = (foot[..., 1:, :, :] - foot[..., :-1, :, :])[..., [0, 2]].norm(dim=-1)
    skating = (contact & (slide > step)).any(-1)
    return skating.to(positions.dtype).mean(-1)


def floor_penetration(positions: Tensor, *, floor: float = 0.0) -> Tensor:
    """Mean depth (metres) of the lowest joint below the floor over the frames (0 above it)."""
    lowest = positions[..., 1].amin(-1)
    return (floor - lowest).clamp_min(0.0).mean(-1)


def jerk(positions: Tensor, fps: float) -> Tensor:
    """Mean magnitude of the third time derivative of the joint positions (m/s^3), by third
    finite differences (exact for cubic trajectories)."""
    third = positions.diff(n=3, dim=-3) * fps**3
    return third.norm(dim=-1).mean((-1, -2))


def motion_metrics(clips: Mapping[str, Tensor], fps: float) -> dict[str, float]:
    """Means over named clips (each ``[T, J, 3]``, at least 4 frames) of the foot-skating ratio,
    the floor penetration (m) and the jerk (m/s^3), with the number of clips and seconds of
    motion; a clip too short for jerk is an InputError naming it."""
    if not clips:
        raise InputError("clips: nothing to evaluate")
    for name, clip in clips.items():
        if len(clip) < 4:
            raise InputError(f"{name}: {len(clip)} frames; jerk needs at least 4")

    def mean(metric) -> float:
        return float(torch.stack([metric(clip).double() for clip in clips.values()]).mean())

    return {
        "foot_skating": mean(foot_skating_ratio),
        "floor_penetration": mean(floor_penetration),
        "jerk": mean(lambda clip: jerk(clip, fps)),
        "clips": len(clips),
        "seconds": sum(len(clip) for clip in clips.values()) / fps,
    }


def diversity(features: Tensor, *, pairs: int = 300, seed: int = 0) -> float:
    """Mean Euclidean distance between the features ``[N, D]`` of random pairs of different
    clips (MDM / HumanML3D's diversity, which pairs 300 draws; here ``pairs`` pairs drawn
    uniformly among distinct ones, seeded)."""
    n = len(features)
    if n < 2:
        raise InputError(f"features: diversity needs at least 2 clips, got {n}")
    generator = torch.Generator().manual_seed(seed)
    first = torch.randint(0, n, (pairs,), generator=generator)
    second = (first + torch.randint(1, n, (pairs,), generator=generator)) % n
    return float((features[first].double() - features[second].double()).norm(dim=-1).mean())


__all__ = [
    "CONTACT_HEIGHTS",
    "SKATING_STEP",
    "diversity",
    "floor_penetration",
    "foot_skating_ratio",
    "jerk",
    "motion_metrics",
]
