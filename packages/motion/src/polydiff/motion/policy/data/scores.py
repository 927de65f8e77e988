"""D4RL reference scores and the normalized score (Fu et al. 2020).

``normalized = (return - random) / (expert - random)``, reported x100 in papers. The table holds
D4RL's reference returns of its mujoco-py (v2) locomotion and maze2d (v1) tasks. Gymnasium's
MuJoCo v5 environments differ from them, so a score computed for ``Hopper-v5`` and the like is
indicative only (:func:`reference_scores` says so).
"""

from __future__ import annotations

from polydiff.core.errors import InputError

__all__ = ["REFERENCE_SCORES", "normalized_score", "reference_scores"]

# (random return, expert return) per D4RL task family.
REFERENCE_SCORES: dict[str, tuple[float, float]] = {
    "hopper": (-20.272305, 3234.3),
    "halfcheetah": (-280.178953, 12135.0),
    "walker2d": (1.629008, 4592.3),
    "maze2d-umaze": (23.85, 161.86),
    "maze2d-medium": (13.13, 277.39),
    "maze2d-large": (6.7, 273.99),
    "antmaze": (0.0, 1.0),
}

# Gymnasium ids that play a D4RL task family (other dynamics: scores indicative only).
_GYMNASIUM_FAMILIES = {
    "hopper-v5": "hopper",
    "halfcheetah-v5": "halfcheetah",
    "walker2d-v5": "walker2d",
}


def reference_scores(task: str) -> tuple[float, float, bool]:
    """(random, expert, indicative) for a D4RL dataset or task name (``hopper-medium-v2``,
    ``maze2d-umaze-v1``, ``antmaze-large-diverse-v2``) or a gymnasium id (``Hopper-v5``,
    indicative)."""
    name = task.lower()
    if name in _GYMNASIUM_FAMILIES:
        return (*REFERENCE_SCORES[_GYMNASIUM_FAMILIES[name]], True)
    parts = name.split("-")
    # Dense-reward maze2d variants have other reference returns, not in this table.
    for family in ("-".join(parts[:2]), parts[0]):
        if family in REFERENCE_SCORES and "dense" not in parts:
            return (*REFERENCE_SCORES[family], False)
    raise InputError(
        f"task: no D4RL reference scores for {task!r} (known: {', '.join(REFERENCE_SCORES)}, "
        f"{', '.join(_GYMNASIUM_FAMILIES)})"
    )


def normalized_score(task: str, score: float) -> float:
    """D4RL normalized score of an episode return on ``task`` (1.0 = expert, 0.0 = random;
    multiply by 100 for the papers' numbers)."""
    low, high, _ = reference_scores(task)
    return (score - low) / (high - low)
