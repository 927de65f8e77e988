"""Reader for local Minari datasets (Farama Foundation), without importing minari.

A Minari dataset folder holds ``data/main_data.hdf5`` and ``data/metadata.json``. The HDF5 file
has one group ``episode_<i>`` per episode with ``observations`` (T + 1 rows: the reset
observation and one after each step; a group of such datasets for Dict / Tuple spaces),
``actions``, ``rewards``, ``terminations`` and ``truncations`` (T rows each) and optional
``infos``. ``metadata.json`` carries the environment spec (``env_spec``, a JSON string).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import h5py
import numpy as np

from polydiff.core.errors import InputError
from polydiff.motion.policy.data.d4rl import OfflineData, open_hdf5
from polydiff.motion.policy.envs import check_env_dims

__all__ = ["read_minari"]

MAIN_FILE = "main_data.hdf5"
_STEP_KEYS = ("actions", "rewards", "terminations", "truncations")


def _main_file(path: Path) -> Path:
    """The main_data.hdf5 of a dataset folder, of its data/ folder, or the file itself."""
    for candidate in (path / "data" / MAIN_FILE, path / MAIN_FILE):
        if candidate.is_file():
            return candidate
    if path.is_dir():
        raise InputError(f"{path}: no {MAIN_FILE} in this folder or in its data/ folder")
    return path


def _natural_key(name: str) -> tuple:
    """Sort key that puts ``_index_10`` after ``_index_9`` (Tuple spaces) and ``episode_10``
    after ``episode_9``; other names alphabetically (gymnasium's order for Dict spaces)."""
    match = re.fullmatch(r"(.*?)(\d+)", name)
    return (match.group(1), int(match.group(2))) if match else (name, -1)


def _flat(node: h5py.Dataset | h5py.Group, source: str) -> np.ndarray:
    """A dataset as (rows, features); a group as its members' columns side by side."""
    if isinstance(node, h5py.Dataset):
        value = node[()]
        return value.reshape(len(value), -1)
    parts = [_flat(node[k], source) for k in sorted(node, key=_natural_key)]
    if len({len(p) for p in parts}) > 1:
        raise InputError(
            f"{source}: key '{node.name.lstrip('/')}' holds members with different row counts "
            f"{[len(p) for p in parts]}"
        )
    return np.concatenate(parts, axis=1)


def _numeric_infos(group: h5py.Group, steps: int, prefix: str = "") -> dict[str, np.ndarray]:
    """Numeric info datasets with T or T + 1 rows, cut to the T rows aligned with the steps."""
    out = {}
    for key, node in group.items():
        name = f"{prefix}{key}"
        if isinstance(node, h5py.Group):
            out.update(_numeric_infos(node, steps, f"{name}/"))
        elif node.dtype.kind in "biuf" and node.ndim >= 1 and len(node) in (steps, steps + 1):
            out[name] = node[:steps]
    return out


def _episode(group: h5py.Group, source: str, name: str) -> OfflineData | None:
    for key in ("observations", *_STEP_KEYS):
        if key not in group:
            raise InputError(f"{source}: missing key '{name}/{key}'")
    obs = _flat(group["observations"], source)
    actions = _flat(group["actions"], source)
    steps = len(actions)
    if len(obs) != steps + 1:
        raise InputError(
            f"{source}: key '{name}/observations' has {len(obs)} rows, expected {steps + 1} "
            f"(one more than '{name}/actions')"
        )
    flags = {}
    for key in _STEP_KEYS[1:]:
        flags[key] = group[key][()].reshape(-1)
        if len(flags[key]) != steps:
            raise InputError(
                f"{source}: key '{name}/{key}' has {len(flags[key])} rows, '{name}/actions' {steps}"
            )
    if steps == 0:
        return None
    timeouts = flags["truncations"].astype(bool)
    # An episode cut without either flag still ends here: mark it, so the flat D4RL layout
    # keeps the boundary.
    timeouts[-1] |= not flags["terminations"][-1]
    info_group = group.get("infos")
    infos = _numeric_infos(info_group, steps) if isinstance(info_group, h5py.Group) else {}
    return OfflineData(
        obs[:-1], actions, flags["rewards"], flags["terminations"], timeouts, obs[1:], infos
    )


def _env_id_from_metadata(folder: Path) -> str | None:
    meta_path = folder / "metadata.json"
    if not meta_path.is_file():
        return None
    try:
        spec = json.loads(meta_path.read_text()).get("env_spec")
        return json.loads(spec).get("id") if isinstance(spec, str) else None
    except (json.JSONDecodeError, AttributeError) as err:
        raise InputError(f"{meta_path}: not readable Minari metadata ({err})") from None


def read_minari(path: str | Path, *, env_id: str | None = None) -> OfflineData:
    """Read a local Minari dataset (its folder, its data/ folder or its main_data.hdf5) into
    the D4RL layout: observations[:-1] / observations[1:] of each episode become observations /
    next_observations, terminations / truncations become terminals / timeouts. Dict and Tuple
    observations are flattened (keys sorted, as ``gymnasium.spaces.flatten`` does). The
    environment id comes from ``env_id`` or the dataset's metadata.json; when known, the
    observation and action sizes are checked against it."""
    main = _main_file(Path(path))
    source = str(main)
    with open_hdf5(main) as f:
        names = sorted((k for k in f if re.fullmatch(r"episode_\d+", k)), key=_natural_key)
        if not names:
            raise InputError(f"{source}: no episode_<i> groups (not a Minari main_data.hdf5)")
        read = [(name, _episode(f[name], source, name)) for name in names]
    read = [(name, part) for name, part in read if part is not None]
    if not read:
        raise InputError(f"{source}: every episode is empty")
    parts = [part for _, part in read]
    for name, part in read:
        if (part.obs_dim, part.act_dim) != (parts[0].obs_dim, parts[0].act_dim):
            raise InputError(
                f"{source}: key '{name}' has observation / action sizes "
                f"{part.obs_dim} / {part.act_dim}, the first episode {parts[0].obs_dim} / "
                f"{parts[0].act_dim}"
            )
    env_id = env_id or _env_id_from_metadata(main.parent)
    data = OfflineData.concat(parts, env_id).check(source)
    if env_id is not None:
        check_env_dims(source, env_id, data.obs_dim, data.act_dim)
    return data
