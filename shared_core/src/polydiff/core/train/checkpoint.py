"""Checkpoint I/O for Lightning: atomic writes, loading without executing pickled code, RNG state.

Lightning's default `TorchCheckpointIO` serializes into memory and writes the final path inside an
fsspec transaction; `AtomicCheckpointIO` instead writes a temporary file in the same folder, fsyncs
it and `os.replace`s it over the target, so `last.ckpt` is always either the previous or the new
complete checkpoint, even after a SIGKILL or power loss mid-write.

Loading always uses `torch.load(weights_only=True)`: the unpickler only rebuilds tensors and
primitive containers (dict, list, tuple, str, int, float, bool, None) and refuses any other
global, so a checkpoint cannot run code. Everything polydiff puts in a checkpoint fits that
(model/EMA state dicts, optimizer and scheduler state, loop progress, loader position, RNG states
as tensors and tuples); the Lightning module never calls `save_hyperparameters` with objects.
"""

from __future__ import annotations

import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from polydiff.core.errors import InputError
from polydiff.core.io import atomic_path

__all__ = [
    "AtomicCheckpointIO",
    "get_rng_state",
    "is_complete_checkpoint",
    "load_checkpoint",
    "set_rng_state",
]


def is_complete_checkpoint(path: str | Path) -> bool:
    """Whether `path` is a whole `torch.save` archive: a zip whose central directory, written
    last, is present (a file cut short by a full disk or a killed copy has none)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return bool(archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a Lightning checkpoint with `weights_only=True` (never executes pickled code)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if not is_complete_checkpoint(path):
        raise InputError(f"{path}: not a complete checkpoint (truncated, or not a torch.save file)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError or EOFError
        # torch's own message suggests weights_only=False: never for a file of unknown origin
        raise InputError(
            f"{path}: not a polydiff checkpoint (it holds more than tensors and plain "
            f"containers, or is damaged: {type(err).__name__})"
        ) from err


class AtomicCheckpointIO(TorchCheckpointIO):
    """`CheckpointIO` that writes atomically and loads with `weights_only=True`."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO.save_checkpoint takes no storage_options")
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)

    def load_checkpoint(
        self, path: str | Path, map_location: Any = "cpu", weights_only: bool | None = None
    ) -> dict[str, Any]:
        if weights_only is False:
            raise ValueError(
                f"refusing to load {path} with weights_only=False: polydiff checkpoints hold only "
                "tensors and primitive containers"
            )
        return load_checkpoint(path, map_location=map_location)


def get_rng_state() -> dict[str, Any]:
    """Global RNG states (torch CPU, CUDA, numpy, python) in weights_only-loadable types."""
    np_state = np.random.get_state(legacy=True)  # noqa: NPY002
    assert isinstance(np_state, tuple)
    name, keys, pos, has_gauss, cached = np_state
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": (str(name), torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of `get_rng_state`."""
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np_state = (name, keys.numpy().astype(np.uint32), pos, has_gauss, cached)
    np.random.set_state(np_state)  # noqa: NPY002
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
