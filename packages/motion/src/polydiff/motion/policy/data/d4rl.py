"""Offline data in the D4RL HDF5 layout: the in-memory record, its reader and writer.

A D4RL file (Fu et al. 2020, "D4RL: Datasets for Deep Data-Driven Reinforcement Learning") is a
flat table of N steps: ``observations`` (N x obs), ``actions`` (N x act), ``rewards`` (N) and
``terminals`` (N) are required; ``timeouts`` (N), ``next_observations`` (N x obs) and
``infos/*`` (N x ...) are optional; ``metadata/*`` is ignored. An episode ends after a step whose
``terminals`` or ``timeouts`` flag is set; steps after the last flag form a last, unfinished
episode. The ``d4rl`` package itself is not needed (nor importable offline): real D4RL files
that users already have open with :func:`read_d4rl`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from polydiff.core.errors import InputError
from polydiff.core.io import atomic_path
from polydiff.motion.policy.envs import check_env_dims

__all__ = ["REQUIRED_KEYS", "OfflineData", "read_d4rl", "write_d4rl"]

REQUIRED_KEYS = ("observations", "actions", "rewards", "terminals")
_STEP_KEYS = (*REQUIRED_KEYS, "timeouts", "next_observations")


@dataclasses.dataclass(eq=False)
class OfflineData:
    """N steps of offline data in the D4RL layout (one or several episodes, back to back).

    ``observations[i]`` is seen before ``actions[i]``; ``rewards[i]``, ``terminals[i]``,
    ``timeouts[i]`` and ``next_observations[i]`` follow it. ``infos`` maps a name to an array
    with N rows. ``env_id`` is the gymnasium id the data were recorded in, if known.
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminals: np.ndarray
    timeouts: np.ndarray | None = None
    next_observations: np.ndarray | None = None
    infos: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    env_id: str | None = None

    def __post_init__(self):
        self.observations = np.asarray(self.observations, dtype=np.float32)
        self.actions = np.asarray(self.actions, dtype=np.float32)
        self.rewards = np.asarray(self.rewards, dtype=np.float32)
        self.terminals = np.asarray(self.terminals).astype(bool)
        if self.timeouts is None:
            self.timeouts = np.zeros(len(self.terminals), dtype=bool)
        self.timeouts = np.asarray(self.timeouts).astype(bool)
        if self.next_observations is not None:
            self.next_observations = np.asarray(self.next_observations, dtype=np.float32)
        self.infos = {k: np.asarray(v) for k, v in self.infos.items()}

    def __len__(self) -> int:
        return len(self.observations)

    @property
    def obs_dim(self) -> int:
        return self.observations.shape[1]

    @property
    def act_dim(self) -> int:
        return self.actions.shape[1]

    def arrays(self) -> dict[str, np.ndarray]:
        """Every per-step array by its D4RL key (``infos/<name>`` for infos)."""
        out = {k: getattr(self, k) for k in _STEP_KEYS if getattr(self, k) is not None}
        out.update({f"infos/{k}": v for k, v in self.infos.items()})
        return out

    def check(self, source: str = "data") -> OfflineData:
        """InputError naming ``source`` and the key when shapes or lengths disagree or values
        are not finite; returns self."""
        n = len(self.observations)
        for key, ndim in (("observations", 2), ("actions", 2)):
            if getattr(self, key).ndim != ndim:
                shape = getattr(self, key).shape
                raise InputError(f"{source}: key '{key}' must be 2-D (steps x size), got {shape}")
        for key, value in self.arrays().items():
            if key in ("rewards", "terminals", "timeouts") and value.ndim != 1:
                raise InputError(f"{source}: key '{key}' must be 1-D, got shape {value.shape}")
            if len(value) != n:
                raise InputError(f"{source}: key '{key}' has {len(value)} rows, 'observations' {n}")
        if n == 0:
            raise InputError(f"{source}: key 'observations' holds no steps")
        nxt = self.next_observations
        if nxt is not None and nxt.shape != self.observations.shape:
            raise InputError(
                f"{source}: key 'next_observations' has shape {nxt.shape}, "
                f"'observations' {self.observations.shape}"
            )
        for key in ("observations", "actions", "rewards", "next_observations"):
            value = getattr(self, key)
            if value is not None and not np.isfinite(value).all():
                raise InputError(f"{source}: key '{key}' holds NaN or infinite values")
        return self

    def episode_bounds(self) -> list[tuple[int, int]]:
        """(start, stop) of each episode: one ends after each terminal or timeout step."""
        ends = (np.flatnonzero(self.terminals | self.timeouts) + 1).tolist()
        if not ends or ends[-1] != len(self):
            ends.append(len(self))
        return list(zip([0, *ends[:-1]], ends))

    def slice(self, start: int, stop: int) -> OfflineData:
        """Steps ``start:stop`` as their own OfflineData (arrays are views)."""
        nxt = self.next_observations
        return OfflineData(
            self.observations[start:stop],
            self.actions[start:stop],
            self.rewards[start:stop],
            self.terminals[start:stop],
            self.timeouts[start:stop],
            None if nxt is None else nxt[start:stop],
            {k: v[start:stop] for k, v in self.infos.items()},
            self.env_id,
        )

    def stats(self) -> dict[str, Any]:
        """Episodes, steps and, with ``infos/success``, the share of episodes that succeeded."""
        bounds = self.episode_bounds()
        out: dict[str, Any] = {"env_id": self.env_id, "episodes": len(bounds), "steps": len(self)}
        if "success" in self.infos:
            hits = [bool(np.any(self.infos["success"][a:b])) for a, b in bounds]
            out["success_rate"] = float(np.mean(hits)) if hits else 0.0
        return out

    def episodes(self) -> list[OfflineData]:
        """The episodes, in order (see :meth:`episode_bounds`)."""
        return [self.slice(a, b) for a, b in self.episode_bounds()]

    @classmethod
    def concat(cls, parts: Sequence[OfflineData], env_id: str | None = None) -> OfflineData:
        """Episodes (or any pieces) back to back; next_observations and infos are kept where
        every part has them."""
        nxt = [p.next_observations for p in parts]
        info_keys = set.intersection(*(set(p.infos) for p in parts)) if parts else set()
        return cls(
            np.concatenate([p.observations for p in parts]),
            np.concatenate([p.actions for p in parts]),
            np.concatenate([p.rewards for p in parts]),
            np.concatenate([p.terminals for p in parts]),
            np.concatenate([p.timeouts for p in parts]),
            None if any(x is None for x in nxt) else np.concatenate(nxt),
            {k: np.concatenate([p.infos[k] for p in parts]) for k in sorted(info_keys)},
            env_id if env_id is not None else (parts[0].env_id if parts else None),
        )


def open_hdf5(path: Path) -> h5py.File:
    """``path`` opened read-only, or an InputError naming it."""
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise InputError(f"{path}: not a readable HDF5 file ({err})") from None


def _dataset(f: h5py.File, path: Path, key: str) -> np.ndarray:
    node = f.get(key)
    if not isinstance(node, h5py.Dataset):
        raise InputError(
            f"{path}: missing key '{key}' (a D4RL file holds {', '.join(REQUIRED_KEYS)})"
        )
    return node[()]


def _attr_str(value) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def read_d4rl(path: str | Path, *, env_id: str | None = None) -> OfflineData:
    """Read a D4RL-layout HDF5 file, checked: required keys present, one row per step in every
    key, finite values and, when ``env_id`` is given (or stored in the file's ``env_id``
    attribute), observation / action sizes equal to that environment's.

    Rewards stored as N x 1 are flattened; float terminals / timeouts become booleans.
    """
    path = Path(path)
    with open_hdf5(path) as f:
        arrays = {key: _dataset(f, path, key) for key in REQUIRED_KEYS}
        for key in ("timeouts", "next_observations"):
            if isinstance(f.get(key), h5py.Dataset):
                arrays[key] = f[key][()]
        group = f.get("infos")
        infos = {}
        if isinstance(group, h5py.Group):
            infos = {k: v[()] for k, v in group.items() if isinstance(v, h5py.Dataset)}
        stored = _attr_str(f.attrs.get("env_id"))
    if env_id is not None and stored is not None and env_id != stored:
        raise InputError(f"{path}: recorded in {stored}, not in env_id={env_id}")
    env_id = env_id or stored
    if arrays["rewards"].ndim == 2 and arrays["rewards"].shape[1] == 1:
        arrays["rewards"] = arrays["rewards"][:, 0]
    data = OfflineData(**arrays, infos=infos, env_id=env_id).check(str(path))
    if env_id is not None:
        check_env_dims(str(path), env_id, data.obs_dim, data.act_dim)
    return data


def write_d4rl(path: str | Path, data: OfflineData) -> Path:
    """Write ``data`` as a D4RL-layout HDF5 file (float32 observations / actions / rewards,
    boolean terminals / timeouts, ``infos/*``, the env id as a root attribute), atomically."""
    data.check("data")
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        for key, value in data.arrays().items():
            f.create_dataset(key, data=value)
        if data.env_id is not None:
            f.attrs["env_id"] = data.env_id
    return Path(path)
