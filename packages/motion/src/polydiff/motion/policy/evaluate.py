"""Rollout evaluation: a policy runs in several environments in lockstep with fixed seeds.

A policy sees the last ``n_obs_steps`` flat observations of every running environment at once,
(B, To, obs) (at reset the first observation is repeated, as diffusion policy's multi-step
wrapper does), and returns a chunk of actions (B, k, act); the k actions are executed one by one
(receding horizon) before it is asked again. Metrics: success rate (with a 95% Wilson interval),
mean return, mean over episodes of the largest step reward (PushT's score: its reward is
clip(coverage / 0.95, 0, 1)), episode length, network calls and milliseconds of policy time per
executed action.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from polydiff.core.errors import InputError
from polydiff.core.metrics import wilson_interval
from polydiff.motion.policy.data.scores import reference_scores
from polydiff.motion.policy.envs import env_dims, flat_obs, make_env

__all__ = [
    "ChunkPolicy",
    "RolloutResult",
    "ScriptedChunkPolicy",
    "check_policy_fits",
    "evaluate",
    "policy_for",
    "rollout",
]


class ChunkPolicy(Protocol):
    n_obs_steps: int
    network_calls: int
    """Network evaluations so far (one per batched call), read before and after a rollout."""

    def act(self, obs: np.ndarray) -> np.ndarray:
        """(B, To, obs) -> (B, k, act) actions to execute next. A policy with ``stateful =
        True`` also has ``reset(n_envs)`` and gets ``rows=`` (the running envs' indices)."""
        ...


class ScriptedChunkPolicy:
    """A scripted policy on raw observations (``policy(raw_obs, rng) -> action``, reading
    everything it needs from the observation) as a one-action :class:`ChunkPolicy`. Each
    environment gets its own copy of ``policy`` (reset at the start), so a script that
    remembers something within an episode (the PushT expert's contact) keeps it per episode."""

    n_obs_steps = 1
    network_calls = 0
    stateful = True

    def __init__(self, policy, observation_space, seed: int = 0):
        self.policy, self.space = policy, observation_space
        self.rng = np.random.default_rng(seed)
        self.copies = [policy]

    def reset(self, n_envs: int) -> None:
        self.copies = [copy.deepcopy(self.policy) for _ in range(n_envs)]
        for script in self.copies:
            script.reset(None)

    def act(self, obs: np.ndarray, rows=None) -> np.ndarray:
        rows = range(len(obs)) if rows is None else rows
        raw = [gym.spaces.unflatten(self.space, o[-1].astype(np.float64)) for o in obs]
        return np.stack([self.copies[r](o, self.rng) for r, o in zip(rows, raw)])[:, None]


@dataclasses.dataclass
class RolloutResult:
    env_id: str
    seeds: list[int]
    successes: list[bool]
    returns: list[float]
    lengths: list[int]
    network_calls: int
    policy_seconds: float
    steps: int
    """Lockstep control steps (each executes one action in every running env)."""
    observations: list[np.ndarray] = dataclasses.field(default_factory=list)
    """Per episode, its flat observations (length + 1 rows, the reset observation first)."""
    max_rewards: list[float] = dataclasses.field(default_factory=list)
    """Per episode, its largest step reward."""

    @property
    def success_rate(self) -> float:
        return float(np.mean(self.successes))

    @property
    def mean_return(self) -> float:
        return float(np.mean(self.returns))

    def summary(self) -> dict[str, Any]:
        low, high = wilson_interval(sum(self.successes), len(self.successes))
        out = {
            "env_id": self.env_id,
            "episodes": len(self.seeds),
            "success_rate": self.success_rate,
            "success_ci95": [low, high],
            "mean_return": self.mean_return,
            "mean_max_reward": float(np.mean(self.max_rewards)) if self.max_rewards else None,
            "mean_length": float(np.mean(self.lengths)),
            "network_calls_per_action": self.network_calls / max(self.steps, 1),
            "ms_per_action": 1000 * self.policy_seconds / max(self.steps, 1),
        }
        try:
            random, expert, indicative = reference_scores(self.env_id)
        except InputError:
            return out
        out["normalized_score"] = (self.mean_return - random) / (expert - random)
        out["normalized_score_indicative"] = indicative
        return out


def evaluate(
    policy: ChunkPolicy,
    env_id: str,
    seeds: list[int] | range,
    *,
    env_kwargs: dict[str, Any] | None = None,
    max_steps: int | None = None,
) -> RolloutResult:
    """Roll ``policy`` out once per seed (env i reset with ``seeds[i]``), all envs in lockstep
    with batched policy calls, until each terminates or truncates (or ``max_steps``). Success:
    the env's ``success`` / ``is_success`` info at any step."""
    seeds = list(seeds)
    check_policy_fits(policy, env_id)
    envs = [make_env(env_id, **(env_kwargs or {})) for _ in seeds]
    try:
        return _run(policy, env_id, envs, seeds, max_steps)
    finally:
        for env in envs:
            env.close()


def check_policy_fits(policy: ChunkPolicy, env_id: str) -> None:
    """InputError when a trained policy (its ``config``) was made for another environment or
    other observation / action sizes than ``env_id``'s."""
    config = getattr(policy, "config", None)
    if config is None:
        return
    trained_for = getattr(config, "env_id", None)
    if trained_for is not None and trained_for != env_id:
        raise InputError(f"env_id: the policy was trained for {trained_for}, not {env_id}")
    obs_dim, act_dim = env_dims(env_id)
    if (config.obs_dim, config.act_dim) != (obs_dim, act_dim):
        raise InputError(
            f"env_id: the policy takes {config.obs_dim} observations / {config.act_dim} actions, "
            f"{env_id} has {obs_dim} / {act_dim}"
        )


def _run(policy, env_id, envs, seeds, max_steps) -> RolloutResult:
    n, space = len(envs), envs[0].observation_space
    raw = [env.reset(seed=seed)[0] for env, seed in zip(envs, seeds)]
    history = np.stack([np.repeat(flat_obs(space, o)[None], policy.n_obs_steps, 0) for o in raw])
    stateful = getattr(policy, "stateful", False)  # keeps a buffer per environment
    if stateful:
        policy.reset(n)
    done = np.zeros(n, bool)
    visited = [[history[i, -1].copy()] for i in range(n)]
    success, returns, lengths = np.zeros(n, bool), np.zeros(n), np.zeros(n, int)
    best = np.full(n, -np.inf)
    queue: np.ndarray | None = None
    calls0, seconds, steps = policy.network_calls, 0.0, 0
    while not done.all() and (max_steps is None or steps < max_steps):
        running = np.flatnonzero(~done)
        if queue is None or queue.shape[1] == 0:
            start = time.perf_counter()
            rows = {"rows": running} if stateful else {}
            chunk = np.asarray(policy.act(history[running], **rows))
            seconds += time.perf_counter() - start
            queue = np.zeros((n, chunk.shape[1], chunk.shape[2]), np.float32)
            queue[running] = chunk
        action, queue = queue[:, 0], queue[:, 1:]
        for i in running:
            raw[i], reward, terminated, truncated, info = envs[i].step(action[i])
            returns[i] += reward
            best[i] = max(best[i], reward)
            lengths[i] += 1
            success[i] |= bool(info.get("success", info.get("is_success", False)))
            history[i] = np.concatenate([history[i, 1:], flat_obs(space, raw[i])[None]])
            visited[i].append(history[i, -1].copy())
            done[i] = terminated or truncated
        steps += 1
    return RolloutResult(
        env_id,
        seeds,
        success.tolist(),
        returns.tolist(),
        lengths.tolist(),
        policy.network_calls - calls0,
        seconds,
        steps,
        [np.stack(v) for v in visited],
        best.tolist(),
    )


def policy_for(spec: str | None, env_id: str | None = None, option: str = "policy"):
    """(policy, env id) for a command line: ``spec`` a saved policy folder, ``None`` the
    shipped UMaze diffusion policy, or ``"expert"`` the scripted PointMaze or PushT expert;
    ``env_id`` defaults to the policy's own (an expert needs one)."""
    from polydiff.motion.policy.common import CHECKPOINTS, load_policy
    from polydiff.motion.policy.experts import PointMazeExpert
    from polydiff.motion.policy.pusht import PUSHT_ID, PushTExpert

    if spec == "expert":
        if env_id is None or not (env_id.startswith("PointMaze") or env_id == PUSHT_ID):
            raise InputError(
                f"{option}=expert: the scripted expert needs a PointMaze env_id or {PUSHT_ID}"
            )
        env = make_env(env_id, "env_id")
        try:
            expert = PushTExpert() if env_id == PUSHT_ID else PointMazeExpert(env)
            return ScriptedChunkPolicy(expert, env.observation_space), env_id
        finally:
            env.close()
    policy = load_policy(CHECKPOINTS / "umaze-diffusion" if spec is None else spec)
    env_id = env_id or policy.config.env_id
    if env_id is None:
        raise InputError(f"env_id: {spec} does not say its environment; give env_id=")
    return policy, env_id


def rollout(policy: ChunkPolicy, env_id: str, seeds, max_steps: int | None = None):
    """:func:`evaluate` in the episodic form the built-in datasets were recorded in (PointMaze
    ends at the goal: ``continuing_task=False``)."""
    kwargs = {"continuing_task": False} if env_id.startswith("PointMaze") else {}
    return evaluate(policy, env_id, seeds, env_kwargs=kwargs, max_steps=max_steps)
