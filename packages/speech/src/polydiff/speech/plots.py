"""Spectrogram figure of noisy / enhanced / clean signals (log magnitude, shared colour scale)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from polydiff.core.io import atomic_path
from polydiff.speech.audio import PRESETS, SpecConfig, stft


def plot_spectrograms(
    signals: Mapping[str, np.ndarray | torch.Tensor],
    path: str | os.PathLike,
    cfg: SpecConfig = PRESETS["16k"],
    dynamic_range_db: float = 80.0,
    title: str | None = None,
) -> Path:
    """Write a PNG with one log-magnitude STFT panel per signal (e.g. noisy, enhanced, clean).

    All panels share the colour scale: 0 dB is the loudest bin over all signals and the floor is
    `dynamic_range_db` below, so levels are comparable across panels. Written atomically.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if not signals:
        raise ValueError("plot_spectrograms: no signals given")
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"{path}: plot_spectrograms writes PNG files")
    mags = {}
    for name, x in signals.items():
        x = torch.as_tensor(np.asarray(x, dtype=np.float64))
        if x.ndim != 1 or not torch.isfinite(x).all():
            raise ValueError(f"plot_spectrograms: {name!r} must be finite mono audio (T,)")
        mags[name] = 20 * torch.log10(stft(x, cfg).abs() + 1e-12).numpy()
    top = max(float(m.max()) for m in mags.values())
    fig, axes = plt.subplots(
        len(mags), 1, figsize=(8, 2.2 * len(mags)), squeeze=False, layout="constrained"
    )
    for ax, (name, m) in zip(axes[:, 0], mags.items()):
        seconds = (m.shape[1] - 1) * cfg.hop_length / cfg.sample_rate
        image = ax.imshow(
            m - top,
            origin="lower",
            aspect="auto",
            cmap="magma",
            vmin=-dynamic_range_db,
            vmax=0.0,
            extent=(0.0, seconds, 0.0, cfg.sample_rate / 2000),
        )
        ax.set_title(name)
        ax.set_ylabel("kHz")
    axes[-1, 0].set_xlabel("time (s)")
    fig.colorbar(image, ax=axes[:, 0].tolist(), label="dB")
    if title:
        fig.suptitle(title)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path
