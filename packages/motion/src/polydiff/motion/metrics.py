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


def frechet_distance(mean_a: Tensor, cov_a: Tensor, mean_b: Tensor, cov_b: Tensor) -> float:
    """Frechet (2-Wasserstein squared) distance of two Gaussians (Dowson & Landau 1982):
    |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2), in float64. The trace of the
    matrix square root is the sum of the square roots of the eigenvalues of the symmetric
    S_a^1/2 S_b S_a^1/2, so no non-symmetric square root is needed."""
    mean_a, cov_a, mean_b, cov_b = (v.double() for v in (mean_a, cov_a, mean_b, cov_b))
    values, vectors = torch.linalg.eigh(cov_a)
    root_a = (vectors * values.clamp_min(0).sqrt()) @ vectors.T
    middle = root_a @ cov_b @ root_a
    cross = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0).sqrt().sum()
    distance = (mean_a - mean_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * cross
    return float(distance.clamp_min(0))


def _statistics(features: Tensor, name: str) -> tuple[Tensor, Tensor]:
    if features.ndim != 2 or len(features) < 2:
        raise InputError(
            f"{name}: FID needs at least 2 feature vectors [N, D], got {features.shape}"
        )
    features = features.double()
    return features.mean(0), torch.cov(features.T)


def fid(features: Tensor, reference: Tensor) -> float:
    """Frechet distance between the Gaussians fitted to two sets of feature vectors ``[N, D]``
    (the FID of Heusel et al. 2017 as HumanML3D / MDM compute it in their motion encoder's
    feature space: sample mean and unbiased covariance)."""
    return frechet_distance(
        *_statistics(features, "features"), *_statistics(reference, "reference")
    )


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
    "fid",
    "floor_penetration",
    "foot_skating_ratio",
    "frechet_distance",
    "jerk",
    "motion_metrics",
]
