"""A task where averaging the demonstrated modes fails: a point passes a round obstacle on the left
or on the right to reach the goal straight behind it.

Diffusion Policy's argument for modelling the action distribution (Chi et al. 2023, "Diffusion
Policy: Visuomotor Policy Learning via Action Diffusion", Sec. 4.1): when
demonstrations go around an obstacle either way with equal probability, the mean action, which is
what a regressor trained with squared error predicts, heads for the obstacle. Here the expert
picks its side once per episode, so near the start every state has two demonstrated actions,
one to each side, whose mean points at the obstacle; touching it ends the episode as a failure.

``ObstacleFork`` (registered as ``FORK_ID``): observation = position (x, y), action = velocity in
[-1, 1]^2, x += 0.1 a per step; start at (U[-0.3, 0.3], -1.2); the obstacle is the disc of radius
0.35 at the origin; success = within 0.1 of the goal (0, 1.2); 100 steps at most. Reward 1 at the
goal, else 0.
"""

from __future__ import annotations

from typing import ClassVar

import gymnasium as gym
import numpy as np

from polydiff.core.errors import InputError
from polydiff.motion.policy.data.d4rl import OfflineData
from polydiff.motion.policy.experts import collect

__all__ = ["FORK_ID", "ForkExpert", "ModeAverage", "ObstacleFork", "fork_dataset"]

FORK_ID = "polydiff/ObstacleFork-v0"
DT = 0.1
RADIUS = 0.35
GOAL = np.array([0.0, 1.2])
GOAL_RADIUS = 0.1
START_Y, START_HALF_WIDTH = -1.2, 0.3
MAX_STEPS = 100


class ObstacleFork(gym.Env):
    """The point, the obstacle and the goal (see the module docstring); info ``success`` at the
    goal, ``collision`` on touching the obstacle."""

    metadata: ClassVar[dict] = {"render_modes": []}

    def __init__(self):
        self.observation_space = gym.spaces.Box(-2.0, 2.0, (2,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.position = np.zeros(2)

    def reset(self, *, seed: int | None = None, options=None):
        super().reset(seed=seed)
        x = self.np_random.uniform(-START_HALF_WIDTH, START_HALF_WIDTH)
        self.position = np.array([x, START_Y])
        return self.position.astype(np.float32), {"success": False, "collision": False}

    def step(self, action):
        action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        self.position = np.clip(self.position + DT * action, -2.0, 2.0)
        collision = bool(np.linalg.norm(self.position) < RADIUS)
        success = bool(np.linalg.norm(self.position - GOAL) < GOAL_RADIUS) and not collision
        info = {"success": success, "collision": collision}
        return self.position.astype(np.float32), float(success), success or collision, False, info


gym.register(FORK_ID, entry_point=ObstacleFork, max_episode_steps=MAX_STEPS)


class ForkExpert:
    """Steers to a waypoint beside the obstacle (x = side * 0.7, y = 0) while below y = -0.2,
    then to the goal, at full speed (gain 5, the velocity's norm capped at 1). ``side`` -1 (left),
    +1 (right) or None: a side drawn with equal probability at each ``reset``."""

    WAYPOINT_X, SWITCH_Y, GAIN = 0.7, -0.2, 5.0

    def __init__(self, side: int | None = None, seed: int = 0):
        if side not in (None, -1, 1):
            raise InputError(f"side: must be -1 (left), 1 (right) or None (random), got {side!r}")
        self.fixed, self.side = side, side or 1
        self.rng = np.random.default_rng(seed)

    def reset(self, obs) -> None:
        self.side = self.fixed or int(self.rng.choice((-1, 1)))

    def action(self, position: np.ndarray, side: int) -> np.ndarray:
        """The action of the expert committed to ``side`` at ``position``."""
        if position[1] < self.SWITCH_Y:
            target = np.array([side * self.WAYPOINT_X, 0.0])
        else:
            target = GOAL
        v = self.GAIN * (target - position)
        return v / max(1.0, float(np.linalg.norm(v)))

    def __call__(self, obs, rng: np.random.Generator | None = None) -> np.ndarray:
        return self.action(np.asarray(obs, dtype=np.float64), self.side)


class ModeAverage:
    """The mean of the two sides' expert actions: what behaviour cloning with squared error
    converges to on demonstrations that take each side equally often. It heads for the
    obstacle."""

    def __init__(self):
        self.expert = ForkExpert()

    def reset(self, obs) -> None:
        pass

    def __call__(self, obs, rng: np.random.Generator | None = None) -> np.ndarray:
        position = np.asarray(obs, dtype=np.float64)
        return (self.expert.action(position, -1) + self.expert.action(position, 1)) / 2


def fork_dataset(episodes: int = 100, seed: int = 0, side: int | None = None) -> OfflineData:
    """``episodes`` demonstrations of :class:`ForkExpert` (episode i reset with seed
    ``seed + i``; the side drawn per episode from a generator seeded with ``seed``, or fixed by
    ``side``) in the D4RL layout; ``infos/side`` records each step's side."""
    env = gym.make(FORK_ID)
    expert = ForkExpert(side, seed)
    sides: list[int] = []

    class Recorder:  # the expert, remembering its side for every step
        def reset(self, obs):
            expert.reset(obs)

        def __call__(self, obs, rng):
            sides.append(expert.side)
            return expert(obs, rng)

    try:
        data = collect(env, Recorder(), episodes, seed, FORK_ID)
    finally:
        env.close()
    data.infos["side"] = np.array(sides, dtype=np.int8)
    return data
