"""An animated stick figure of joint positions ``[T, J, 3]``, written as a GIF (matplotlib,
imported when called, with its headless backend and Pillow writer)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from polydiff.core.io import atomic_path
from polydiff.motion.skeleton import PARENTS

_LEFT = {1, 4, 7, 10, 13, 16, 18, 20}  # drawn in another colour than the right side


def animate(
    positions: torch.Tensor | np.ndarray,
    path: str | os.PathLike,
    *,
    fps: float = 20.0,
    parents: tuple[int, ...] = PARENTS,
    size: float = 4.0,
    dpi: int = 60,
    title: str | None = None,
) -> Path:
    """Write the skeleton's motion (y up) to ``path`` as an animated GIF, one frame per pose; the
    view follows the root horizontally and its floor is y = 0. Returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.animation import FuncAnimation, PillowWriter

    joints = np.asarray(torch.as_tensor(positions, dtype=torch.float64))
    # matplotlib's 3D axes have z up: plot (x, z, y)
    xyz = joints[..., [0, 2, 1]]
    figure = plt.figure(figsize=(size, size), dpi=dpi)
    axes = figure.add_subplot(projection="3d")
    lines = [
        axes.plot([], [], [], color="tab:blue" if j in _LEFT else "tab:red", lw=2)[0]
        for j in range(1, len(parents))
    ]
    half = 1.0
    height = max(float(xyz[..., 2].max()), 1.8)

    def draw(frame: int):
        root = xyz[frame, 0]
        axes.set_xlim(root[0] - half, root[0] + half)
        axes.set_ylim(root[1] - half, root[1] + half)
        axes.set_zlim(0.0, height)
        for line, j in zip(lines, range(1, len(parents)), strict=True):
            bone = xyz[frame, [parents[j], j]]
            line.set_data(bone[:, 0], bone[:, 1])
            line.set_3d_properties(bone[:, 2])
        return lines

    axes.set_box_aspect((1, 1, height / (2 * half)))
    axes.set_xticklabels([])
    axes.set_yticklabels([])
    if title:
        axes.set_title(title)
    animation = FuncAnimation(figure, draw, frames=len(xyz), blit=False)
    try:
        with atomic_path(path) as tmp:
            animation.save(tmp.with_suffix(".gif"), writer=PillowWriter(fps=fps))
            tmp.with_suffix(".gif").replace(tmp)
    finally:
        plt.close(figure)
    return Path(path)


__all__ = ["animate"]
