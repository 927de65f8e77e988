"""HDF5 files of trajectories: polydiff's own layout (write and read) and PDEBench's (read).

polydiff layout (one file per dataset)::

    u   float32 [N, nt, nx]   the trajectories, initial state first
    f   float32 [N, nt, nx]   the forcing on the same grid (absent for unforced equations)
    x   float64 [nx]          the stored nodes
    t   float64 [nt]          the output times
    attrs: dt, dx (output spacings), the equation's parameters (nu for Burgers, c for
           advection), equation, boundary, seed, and layout = "polydiff-pde-1"

PDEBench 1D layout: ``tensor`` [N, nt, nx], ``x-coordinate`` [nx], ``t-coordinate`` [nt] or
[nt + 1] (PDEBench stores the time-cell edges: the first nt are taken), parameters such as
``Nu`` or ``beta`` as file attributes.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from polydiff.core.errors import InputError
from polydiff.core.io import atomic_path
from polydiff.pde.data.generators import PDEData

LAYOUT = "polydiff-pde-1"


def write_dataset(path: str | os.PathLike, data: PDEData) -> Path:
    """Write ``data`` atomically in the polydiff layout (module docstring); returns the path."""
    _check_data(data, "data")
    path = Path(path)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        h5.create_dataset("u", data=np.asarray(data.u, dtype=np.float32))
        if data.f is not None:
            h5.create_dataset("f", data=np.asarray(data.f, dtype=np.float32))
        h5.create_dataset("x", data=np.asarray(data.x, dtype=np.float64))
        h5.create_dataset("t", data=np.asarray(data.t, dtype=np.float64))
        h5.attrs.update({**data.attrs, "layout": LAYOUT})
    return path


def read_dataset(path: str | os.PathLike) -> PDEData:
    """Read a file in the polydiff layout, checking keys, shapes and finiteness."""
    with _open(path) as h5:
        u = _read(h5, "u", path)
        f = _read(h5, "f", path) if "f" in h5 else None
        data = PDEData(u=u, x=_read(h5, "x", path), t=_read(h5, "t", path), f=f)
        data.attrs = {k: _plain(v) for k, v in h5.attrs.items() if k != "layout"}
    for key in ("dt", "dx"):
        if key not in data.attrs:
            raise InputError(f"{path}: missing attribute {key!r}")
    _check_data(data, str(path))
    return data


def read_pdebench(path: str | os.PathLike) -> PDEData:
    """Read a PDEBench-style 1D file (module docstring) into a ``PDEData`` without forcing."""
    with _open(path) as h5:
        u = _read(h5, "tensor", path)
        x = _read(h5, "x-coordinate", path)
        t = _read(h5, "t-coordinate", path)
        attrs = {k: _plain(v) for k, v in h5.attrs.items()}
    if u.ndim == 3 and t.ndim == 1 and t.size == u.shape[1] + 1:
        t = t[:-1]
    data = PDEData(u=u, x=x, t=t, attrs=attrs)
    _check_data(data, str(path), names={"u": "tensor", "x": "x-coordinate", "t": "t-coordinate"})
    if t.size > 1 and x.size > 1:
        data.attrs.setdefault("dt", float(t[1] - t[0]))
        data.attrs.setdefault("dx", float(x[1] - x[0]))
    return data


def _open(path: str | os.PathLike) -> h5py.File:
    if not Path(path).is_file():
        raise InputError(f"{path}: no such file")
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise InputError(f"{path}: not a readable HDF5 file ({err})") from None


def _read(h5: h5py.File, key: str, path) -> np.ndarray:
    if key not in h5:
        raise InputError(f"{path}: missing dataset {key!r}")
    if not isinstance(h5[key], h5py.Dataset):
        raise InputError(f"{path}: {key!r} is a group, expected a dataset")
    return h5[key][()]


def _plain(value):
    """HDF5 attribute -> a JSON-friendly Python value."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _check_data(data: PDEData, source: str, names: dict | None = None) -> None:
    """Shapes agree ([N, nt, nx] with x [nx], t [nt], f like u), values are finite and the
    coordinates increase; else an InputError naming ``source`` and the key."""
    names = names or {"u": "u", "x": "x", "t": "t", "f": "f"}
    u, x, t = (np.asarray(a) for a in (data.u, data.x, data.t))
    if u.ndim != 3:
        raise InputError(f"{source}: {names['u']!r} must be [N, nt, nx], got shape {u.shape}")
    for key, coord, size in (("x", x, u.shape[2]), ("t", t, u.shape[1])):
        if coord.shape != (size,):
            raise InputError(
                f"{source}: {names[key]!r} has shape {coord.shape}, expected ({size},) to match "
                f"{names['u']!r} of shape {u.shape}"
            )
        if not np.isfinite(coord).all() or (size > 1 and not (np.diff(coord) > 0).all()):
            raise InputError(f"{source}: {names[key]!r} must be finite and increasing")
    fields = {"u": u} if data.f is None else {"u": u, "f": np.asarray(data.f)}
    if data.f is not None and fields["f"].shape != u.shape:
        raise InputError(
            f"{source}: 'f' has shape {fields['f'].shape}, expected {u.shape} like 'u'"
        )
    for key, value in fields.items():
        if not np.isfinite(value).all():
            raise InputError(f"{source}: {names[key]!r} contains NaN or infinite values")
