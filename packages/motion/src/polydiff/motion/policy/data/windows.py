"""Fixed-length training windows over episodes, padded at the episode edges.

The sampling scheme of diffusion policy (Chi et al. 2023, "Diffusion Policy: Visuomotor Policy
Learning via Action Diffusion"): a window of ``horizon`` (H) consecutive steps may start up to
To - 1 steps before an episode's first step and end up to Ta - 1 steps after its last one, so
that every step serves as the current observation and every action gets executed; the missing
steps repeat the episode's first or last entry (edge padding).
"""

from __future__ import annotations

import numpy as np

from polydiff.core.errors import InputError
from polydiff.motion.policy.data.d4rl import OfflineData

__all__ = ["SequenceWindows"]


def _check_count(option: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise InputError(f"{option} must be a positive integer, got {value!r}")
    return int(value)


class SequenceWindows:
    """Windows of ``horizon`` steps of the chosen ``keys`` (D4RL keys, ``infos/<name>`` too).

    ``n_obs_steps`` (To) and ``n_action_steps`` (Ta) set the padding: To - 1 steps before an
    episode, Ta - 1 after it. ``index`` (windows x horizon) holds the step each entry reads.
    """

    def __init__(
        self,
        data: OfflineData,
        horizon: int,
        n_obs_steps: int = 1,
        n_action_steps: int = 1,
        keys: tuple[str, ...] = ("observations", "actions"),
    ):
        self.horizon = _check_count("horizon", horizon)
        self.n_obs_steps = _check_count("n_obs_steps", n_obs_steps)
        self.n_action_steps = _check_count("n_action_steps", n_action_steps)
        if n_obs_steps - 1 + n_action_steps > horizon:
            raise InputError(
                f"horizon: {horizon} is shorter than n_obs_steps - 1 + n_action_steps "
                f"= {n_obs_steps - 1 + n_action_steps}"
            )
        arrays = data.arrays()
        unknown = [k for k in keys if k not in arrays]
        if unknown:
            raise InputError(f"keys: {unknown} not in the data (it has {sorted(arrays)})")
        self.arrays = {k: arrays[k] for k in keys}
        pad_before, pad_after = n_obs_steps - 1, n_action_steps - 1
        offsets = np.arange(horizon)
        rows = []
        for start, stop in data.episode_bounds():
            length = stop - start
            first = np.arange(-pad_before, length - horizon + pad_after + 1)
            rows.append(start + np.clip(first[:, None] + offsets, 0, length - 1))
        self.index = np.concatenate(rows)
        if len(self.index) == 0:
            raise InputError(
                f"horizon: no window of {horizon} steps fits: every episode is shorter than "
                f"horizon - (n_obs_steps - 1) - (n_action_steps - 1) = "
                f"{horizon - pad_before - pad_after}"
            )

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        return {k: v[self.index[i]] for k, v in self.arrays.items()}

    def batch(self, indices) -> dict[str, np.ndarray]:
        """Windows ``indices`` stacked: each key as (len(indices), horizon, ...)."""
        rows = self.index[np.asarray(indices)]
        return {k: v[rows] for k, v in self.arrays.items()}

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """``batch_size`` windows drawn uniformly with replacement."""
        return self.batch(rng.integers(0, len(self), size=batch_size))
