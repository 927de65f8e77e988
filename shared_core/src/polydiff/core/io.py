"""Small file I/O helpers shared by every polydiff package: atomic writes, JSON, safetensors.

Every writer here goes through `atomic_path`: the data are written to a temporary file in the
destination folder, flushed to disk, then moved over the destination with `os.replace`, which is
atomic on POSIX and Windows when both paths are on the same file system. A crash or a SIGKILL
mid-write therefore leaves either the old file or the new one, never a truncated mix. Readers
never unpickle: weights are safetensors, configs are JSON.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

__all__ = [
    "TMP_SUFFIX",
    "atomic_path",
    "atomic_save_safetensors",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "check_creatable",
    "load_safetensors",
    "nan_to_none",
    "read_json",
    "remove_stale_temps",
    "safetensors_metadata",
]

# Temporary files are hidden and end in this suffix, so stale ones are easy to find and remove.
TMP_SUFFIX = ".tmp"

PathLike = str | os.PathLike


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable: on POSIX the directory entry itself must be flushed."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_creatable(path: PathLike, name: str) -> None:
    """InputError (naming `name`, the option or file) unless `path` can be created: its nearest
    existing ancestor must be a folder, not a file (`out.wav` under a regular file), in which a
    folder can really be made (probed: permissions alone do not tell for root or read-only
    mounts)."""
    from polydiff.core.errors import InputError

    path = Path(path).expanduser().absolute()
    for parent in path.parents:
        if parent.is_dir():
            try:  # a real probe: os.access says yes to root on read-only mounts and /proc
                os.rmdir(tempfile.mkdtemp(prefix=".polydiff-probe-", dir=parent))
            except OSError as err:
                raise InputError(f"{name}: {parent} is not writable ({err.strerror})") from None
            return
        if parent.exists() or parent.is_symlink():
            raise InputError(f"{name}: {parent} is a file, not a folder")


@contextlib.contextmanager
def atomic_path(path: PathLike, *, fsync: bool = True) -> Iterator[Path]:
    """Yield a fresh temporary path next to `path`; on success move it over `path` atomically.

    The caller writes the whole file to the yielded path with any writer (`torch.save`,
    `soundfile.write`, `nibabel.save`, ...). If the body raises, the temporary file is removed and
    `path` is untouched. The temporary file is created by the caller's writer, so it gets the
    usual permissions (umask), unlike `tempfile.mkstemp` (always 0600).

    Example:
        >>> with atomic_path("out/metrics.csv") as tmp:
        ...     tmp.write_text("a,b\\n1,2\\n")
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"atomic_path: {path} is a directory, expected a file path")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}{TMP_SUFFIX}")
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(
                f"atomic_path: nothing was written to the temporary file for {path}"
            )
        if fsync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if fsync:
            _fsync_dir(path.parent)
    finally:
        # Reached with `tmp` still present only if the body or the flush failed.
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def remove_stale_temps(folder: PathLike) -> list[Path]:
    """Delete temporary files left in `folder` by writers that were killed mid-write.

    Only call this when no other process is writing to `folder`. Returns the removed paths.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.glob(f".*{TMP_SUFFIX}") if p.is_file()]
    for p in stale:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    return stale


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically. Returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write `text` to `path` atomically (UTF-8 by default). Returns the path."""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path: PathLike, obj: Any, *, indent: int | None = 2) -> Path:
    """Serialize `obj` as strict JSON (no NaN/Infinity) and write it to `path` atomically.

    Raises ValueError naming `path` if `obj` is not JSON-serializable, before touching the file.
    """
    try:
        text = json.dumps(obj, indent=indent, sort_keys=False, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"cannot write {path} as JSON: {err}") from err
    return atomic_write_text(path, text + "\n")


def nan_to_none(obj: Any) -> Any:
    """A copy of nested dicts / lists / tuples with NaN and infinite floats as None, for strict
    JSON (e.g. the undefined confidence interval of a one-file mean)."""
    if isinstance(obj, Mapping):
        return {k: nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [nan_to_none(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def read_json(path: PathLike) -> Any:
    """Read a JSON file, with errors that name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"JSON file not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err


def atomic_save_safetensors(
    path: PathLike,
    tensors: Mapping[str, torch.Tensor],
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Save a flat name -> tensor mapping as a safetensors file, atomically.

    Tensors are moved to CPU and made contiguous; tensors that share storage (tied weights) are
    copied, since the format stores each name separately. `metadata` must map str to str.
    """
    if metadata is not None and not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise ValueError(f"safetensors metadata for {path} must map str to str, got {metadata!r}")
    flat: dict[str, torch.Tensor] = {}
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            raise ValueError(
                f"cannot save {path}: entry {name!r} is {type(t).__name__}, not a Tensor"
            )
        flat[name] = t.detach().to("cpu").contiguous().clone()
    with atomic_path(path) as tmp:
        save_file(flat, str(tmp), metadata=dict(metadata) if metadata else None)
    return Path(path)


def load_safetensors(path: PathLike, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Load every tensor of a safetensors file (never unpickles), with errors naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"safetensors file not found: {path}")
    try:
        return load_file(str(path), device=str(device))
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{path} is not a readable safetensors file: {err}") from err


def safetensors_metadata(path: PathLike) -> dict[str, str]:
    """The str -> str metadata stored in a safetensors header (empty if none)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"safetensors file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{path} is not a readable safetensors file: {err}") from err
