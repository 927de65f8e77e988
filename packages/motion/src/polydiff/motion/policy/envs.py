"""Gymnasium environments for policies: registration on demand, flat observations, size checks.

Observations are flat float vectors: a Dict observation (PointMaze's observation / achieved_goal /
desired_goal) is flattened by ``gymnasium.spaces.flatten``, i.e. its keys in sorted order, the
same order the Minari reader uses for Dict observations stored as HDF5 groups.
"""

from __future__ import annotations

import functools
import importlib
import warnings

import gymnasium as gym
import numpy as np

from polydiff.core.errors import InputError

__all__ = ["check_env_dims", "env_dims", "flat_obs", "make_env"]

# Packages whose import registers more environments, tried in order when an id is unknown.
_REGISTRARS = ("gymnasium_robotics", "gym_pusht", "polydiff.motion.policy.fork")


def _register_extras() -> None:
    for module in _REGISTRARS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mod = importlib.import_module(module)
            if module == "gymnasium_robotics":
                gym.register_envs(mod)


def make_env(env_id: str, option: str = "env_id", **kwargs) -> gym.Env:
    """``gym.make(env_id, **kwargs)``, registering gymnasium-robotics and gym-pusht first when
    ``env_id`` is not yet known; an unknown id is an InputError naming ``option``."""
    try:
        gym.spec(env_id)
    except gym.error.Error:
        _register_extras()
        try:
            gym.spec(env_id)
        except gym.error.Error as err:
            raise InputError(f"{option}: unknown environment {env_id!r} ({err})") from None
    return gym.make(env_id, **kwargs)


def flat_obs(space: gym.Space, obs) -> np.ndarray:
    """One observation of ``space`` as a flat float32 vector."""
    return np.asarray(gym.spaces.flatten(space, obs), dtype=np.float32)


@functools.lru_cache(maxsize=64)
def env_dims(env_id: str, option: str = "env_id") -> tuple[int, int]:
    """(flat observation size, flat action size) of ``env_id``."""
    env = make_env(env_id, option)
    try:
        return gym.spaces.flatdim(env.observation_space), gym.spaces.flatdim(env.action_space)
    finally:
        env.close()


def check_env_dims(source: str, env_id: str, obs_dim: int, act_dim: int) -> None:
    """InputError naming ``source`` (a file) when its observation or action size is not the
    size of ``env_id``'s (or when ``env_id`` is unknown)."""
    want_obs, want_act = env_dims(env_id, f"{source}: env_id")
    if obs_dim != want_obs:
        raise InputError(
            f"{source}: observations have {obs_dim} columns, {env_id} observations have {want_obs}"
        )
    if act_dim != want_act:
        raise InputError(
            f"{source}: actions have {act_dim} columns, {env_id} actions have {want_act}"
        )
