"""Offline data for policies: D4RL files, Minari datasets, normalizers, training windows and
D4RL reference scores."""

from polydiff.motion.policy.data.d4rl import REQUIRED_KEYS, OfflineData, read_d4rl, write_d4rl
from polydiff.motion.policy.data.minari import read_minari
from polydiff.motion.policy.data.normalizer import KINDS, Normalizer
from polydiff.motion.policy.data.scores import (
    REFERENCE_SCORES,
    normalized_score,
    reference_scores,
)
from polydiff.motion.policy.data.windows import SequenceWindows

__all__ = [
    "KINDS",
    "REFERENCE_SCORES",
    "REQUIRED_KEYS",
    "Normalizer",
    "OfflineData",
    "SequenceWindows",
    "normalized_score",
    "read_d4rl",
    "read_minari",
    "reference_scores",
    "write_d4rl",
]
