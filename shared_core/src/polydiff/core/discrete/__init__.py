"""Discrete diffusion: masked and uniform paths, their samplers, and an enumerable exact target."""

from polydiff.core.discrete.paths import MaskedDiffusion, UniformDiffusion, per_position
from polydiff.core.discrete.sampling import (
    DiscreteState,
    FirstHittingSampler,
    MaskedAncestral,
    MaskedConfidence,
    ReMDMSampler,
    UniformAncestral,
    sample_categorical,
    top_p_filter,
)
from polydiff.core.discrete.schedules import (
    CosineSchedule,
    DiscreteSchedule,
    LogLinearSchedule,
    get_discrete_schedule,
)
from polydiff.core.discrete.targets import EnumerableTarget

__all__ = [
    "CosineSchedule",
    "DiscreteSchedule",
    "DiscreteState",
    "EnumerableTarget",
    "FirstHittingSampler",
    "LogLinearSchedule",
    "MaskedAncestral",
    "MaskedConfidence",
    "MaskedDiffusion",
    "ReMDMSampler",
    "UniformAncestral",
    "UniformDiffusion",
    "get_discrete_schedule",
    "per_position",
    "sample_categorical",
    "top_p_filter",
]
