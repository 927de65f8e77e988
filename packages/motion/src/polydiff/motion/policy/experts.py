"""Scripted experts and the built-in offline datasets they make (D4RL layout).

PointMaze (gymnasium-robotics): breadth-first search over the maze cells gives, from the
point's cell, the next cell on a shortest path to the goal's cell; a PD controller steers to that
cell's centre (to the goal itself inside the goal's cell), as D4RL's maze2d waypoint controller
did. Variants: ``expert``; ``noisy`` (Gaussian noise on every action, the "medium" kind of data);
``random`` (uniform actions); ``multimodal`` (the expert breaking ties between equally short
routes in a random order drawn per episode). Episodes end at the goal
(``continuing_task=False``) or at the time limit.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

import gymnasium as gym
import numpy as np

from polydiff.core.errors import InputError
from polydiff.motion.policy.data.d4rl import OfflineData
from polydiff.motion.policy.envs import flat_obs, make_env

__all__ = [
    "POINTMAZE_IDS",
    "VARIANTS",
    "NoisyPolicy",
    "PointMazeExpert",
    "RandomPolicy",
    "RandomRoutes",
    "collect",
    "pointmaze_dataset",
]

POINTMAZE_IDS = {
    "umaze": "PointMaze_UMaze-v3",
    "medium": "PointMaze_Medium-v3",
    "large": "PointMaze_Large-v3",
}
VARIANTS = ("expert", "noisy", "random", "multimodal")
_STEPS = ((1, 0), (-1, 0), (0, 1), (0, -1))


class ScriptedPolicy(Protocol):
    def reset(self, obs) -> None: ...

    def __call__(self, obs, rng: np.random.Generator) -> np.ndarray: ...


def cell_distances(free: np.ndarray, goal: tuple[int, int]) -> np.ndarray:
    """Shortest-path length in cells from every free cell to ``goal`` (-1: unreachable)."""
    dist = np.full(free.shape, -1, dtype=np.int64)
    dist[goal] = 0
    queue = deque([goal])
    while queue:
        r, c = queue.popleft()
        for dr, dc in _STEPS:
            n = (r + dr, c + dc)
            inside = 0 <= n[0] < free.shape[0] and 0 <= n[1] < free.shape[1]
            if inside and free[n] and dist[n] < 0:
                dist[n] = dist[r, c] + 1
                queue.append(n)
    return dist


class PointMazeExpert:
    """BFS waypoints + PD control for a PointMaze env (actions are forces in [-1, 1]^2). It
    reads the goal from each observation (the distance field is cached per goal cell), so one
    expert serves any number of episodes and environments of the same maze."""

    def __init__(self, env: gym.Env, kp: float = 10.0, kd: float = 1.0):
        self.maze = env.unwrapped.maze
        self.free = np.array([[cell != 1 for cell in row] for row in self.maze.maze_map])
        self.kp, self.kd = kp, kd
        self.preference = _STEPS
        """Which of several equally short next cells to take: the first in this order."""
        self._fields: dict[tuple[int, int], np.ndarray] = {}

    def reset(self, obs) -> None:
        pass

    def distances(self, goal: np.ndarray) -> np.ndarray:
        cell = tuple(int(v) for v in self.maze.cell_xy_to_rowcol(goal))
        if cell not in self._fields:
            self._fields[cell] = cell_distances(self.free, cell)
        return self._fields[cell]

    def waypoint(self, pos: np.ndarray, goal: np.ndarray) -> np.ndarray:
        dist = self.distances(goal)
        r, c = self.maze.cell_xy_to_rowcol(pos)
        if dist[r, c] <= 0:  # in the goal's cell (or cut off from it): go straight
            return goal
        closer = [
            (r + dr, c + dc) for dr, dc in self.preference if 0 <= dist[r + dr, c + dc] < dist[r, c]
        ]
        nxt = closer[0]
        return goal if dist[nxt] == 0 else self.maze.cell_rowcol_to_xy(np.array(nxt))

    def __call__(self, obs, rng: np.random.Generator | None = None) -> np.ndarray:
        pos, vel = obs["observation"][:2], obs["observation"][2:4]
        goal = np.asarray(obs["desired_goal"], dtype=np.float64)
        return np.clip(self.kp * (self.waypoint(pos, goal) - pos) - self.kd * vel, -1.0, 1.0)


class NoisyPolicy:
    """``policy``'s action plus Gaussian noise of standard deviation ``std``."""

    def __init__(self, policy: ScriptedPolicy, std: float):
        self.policy, self.std = policy, std

    def reset(self, obs) -> None:
        self.policy.reset(obs)

    def __call__(self, obs, rng: np.random.Generator) -> np.ndarray:
        action = self.policy(obs, rng)
        return action + self.std * rng.standard_normal(np.shape(action))


class RandomRoutes:
    """The PointMaze expert with a new random tie-break order each episode: where several
    shortest routes exist the demonstrations take different ones (a multimodal dataset)."""

    def __init__(self, expert: PointMazeExpert, seed: int = 0):
        self.expert, self.rng = expert, np.random.default_rng(seed)

    def reset(self, obs) -> None:
        self.expert.preference = tuple(_STEPS[i] for i in self.rng.permutation(len(_STEPS)))

    def __call__(self, obs, rng: np.random.Generator) -> np.ndarray:
        return self.expert(obs, rng)


class RandomPolicy:
    """Uniform actions in a Box action space."""

    def __init__(self, space: gym.spaces.Box):
        self.space = space

    def reset(self, obs) -> None:
        pass

    def __call__(self, obs, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(self.space.low, self.space.high)


def collect(
    env: gym.Env, policy: ScriptedPolicy, episodes: int, seed: int = 0, env_id: str | None = None
) -> OfflineData:
    """Roll ``policy`` out for ``episodes`` episodes (episode i reset with seed ``seed + i``;
    policy noise drawn from a generator seeded with ``seed``) and record them in the D4RL
    layout. Actions are clipped to the action space and recorded as executed; infos hold
    ``success`` (the env's ``success`` / ``is_success``) and, for goal envs, ``goal``."""
    rng = np.random.default_rng(seed)
    space, low, high = env.observation_space, env.action_space.low, env.action_space.high
    parts = []
    for episode in range(episodes):
        obs, info = env.reset(seed=seed + episode)
        policy.reset(obs)
        rows: dict[str, list] = {k: [] for k in ("obs", "act", "rew", "term", "trunc", "next")}
        infos: dict[str, list] = {"success": []}
        if isinstance(obs, dict) and "desired_goal" in obs:
            infos["goal"] = []
        done = False
        while not done:
            action = np.clip(policy(obs, rng), low, high).astype(np.float32)
            nxt, reward, terminated, truncated, info = env.step(action)
            for key, value in zip(
                rows, (flat_obs(space, obs), action, reward, terminated, truncated)
            ):
                rows[key].append(value)
            rows["next"].append(flat_obs(space, nxt))
            infos["success"].append(bool(info.get("success", info.get("is_success", False))))
            if "goal" in infos:
                infos["goal"].append(np.asarray(obs["desired_goal"], dtype=np.float32))
            obs, done = nxt, terminated or truncated
        parts.append(
            OfflineData(
                *(np.array(rows[k]) for k in ("obs", "act", "rew", "term", "trunc", "next")),
                infos={k: np.array(v) for k, v in infos.items()},
            )
        )
    return OfflineData.concat(parts, env_id)


def pointmaze_dataset(
    maze: str = "umaze",
    variant: str = "expert",
    episodes: int = 20,
    seed: int = 0,
    noise: float = 0.5,
) -> OfflineData:
    """A PointMaze dataset (``maze`` in umaze / medium / large) of ``episodes`` episodes made
    by the BFS + PD expert, its noisy variant (action noise std ``noise``), random actions or
    the expert taking random ones of equally short routes (``multimodal``)."""
    if maze not in POINTMAZE_IDS:
        raise InputError(f"maze: unknown maze {maze!r} (one of {', '.join(POINTMAZE_IDS)})")
    if variant not in VARIANTS:
        raise InputError(f"variant: unknown variant {variant!r} (one of {', '.join(VARIANTS)})")
    env_id = POINTMAZE_IDS[maze]
    env = make_env(env_id, continuing_task=False)
    try:
        expert = PointMazeExpert(env)
        policy = {
            "expert": expert,
            "noisy": NoisyPolicy(expert, noise),
            "random": RandomPolicy(env.action_space),
            "multimodal": RandomRoutes(expert, seed),
        }[variant]
        return collect(env, policy, episodes, seed, env_id)
    finally:
        env.close()
