"""Space-time heat maps of trajectories and control fields (matplotlib, imported when used)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from polydiff.core.errors import InputError
from polydiff.core.io import atomic_path


def _numpy(a) -> np.ndarray:
    return np.asarray(a.detach().cpu() if hasattr(a, "detach") else a, dtype=float)


def plot_space_time(
    path: str | Path, panels: dict[str, np.ndarray], x: np.ndarray, t: np.ndarray, title: str = ""
) -> Path:
    """A PNG of side-by-side (t, x) heat maps, one per panel ([nt, nx] each: e.g. truth,
    prediction, error, forcing), with one symmetric colour scale shared by all panels so that
    they compare at a glance (plot errors or forcings in a call of their own)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arrays = {name: _numpy(a) for name, a in panels.items()}
    shape = (len(t), len(x))
    for name, a in arrays.items():
        if a.shape != shape:
            raise InputError(f"panels: {name!r} has shape {a.shape}, expected [nt, nx] = {shape}")
    if not arrays:
        raise InputError("panels: nothing to plot")
    vmax = max(float(np.abs(a).max()) for a in arrays.values()) or 1.0
    fig, axes = plt.subplots(1, len(arrays), figsize=(3.2 * len(arrays), 3.0), squeeze=False)
    extent = (float(x[0]), float(x[-1]), float(t[-1]), float(t[0]))
    for ax, (name, a) in zip(axes[0], arrays.items(), strict=True):
        image = ax.imshow(a, cmap="RdBu_r", vmin=-vmax, vmax=vmax, aspect="auto", extent=extent)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("x")
    axes[0, 0].set_ylabel("t")
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.9)
    if title:
        fig.suptitle(title, fontsize=10)
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return Path(path)


__all__ = ["plot_space_time"]
