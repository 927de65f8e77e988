"""Pictures of rollouts: the paths a policy took, drawn over the maze for PointMaze."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from polydiff.core.io import atomic_path
from polydiff.motion.policy.envs import make_env
from polydiff.motion.policy.evaluate import RolloutResult

__all__ = ["animate_rollouts", "plot_rollouts"]

# PointMaze's flat observation: achieved_goal (2), desired_goal (2), observation (x, y, vx, vy)
_MAZE_POSITION, _MAZE_GOAL = (4, 5), (2, 3)


def _draw_maze(ax, env_id: str) -> None:
    env = make_env(env_id)
    try:
        maze = env.unwrapped.maze
        size = maze.maze_size_scaling
        for r, row in enumerate(maze.maze_map):
            for c, cell in enumerate(row):
                if cell == 1:
                    x, y = maze.cell_rowcol_to_xy(np.array([r, c]))
                    ax.add_patch(_square(x - size / 2, y - size / 2, size))
    finally:
        env.close()


def _square(x: float, y: float, size: float):
    from matplotlib.patches import Rectangle

    return Rectangle((x, y), size, size, color="0.75", zorder=0)


def _axes(result: RolloutResult):
    """A figure with the maze drawn (PointMaze) and the columns to plot: (fig, ax, xy, goal)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    maze = result.env_id.startswith("PointMaze")
    cols, goal = (_MAZE_POSITION, _MAZE_GOAL) if maze else ((0, 1), None)
    fig, ax = plt.subplots(figsize=(5, 5))
    if maze:
        _draw_maze(ax, result.env_id)
    ax.set_aspect("equal")
    ax.set_xlabel("x" if maze else f"observation {cols[0]}")
    ax.set_ylabel("y" if maze else f"observation {cols[1]}")
    rate = f"{sum(result.successes)}/{len(result.successes)} succeeded"
    ax.set_title(f"{result.env_id}: {rate}")
    return fig, ax, cols, goal


def _episodes(result: RolloutResult, max_episodes: int):
    pairs = list(zip(result.observations, result.successes))[:max_episodes]
    return [(obs, "tab:green" if ok else "tab:red") for obs, ok in pairs]


def plot_rollouts(result: RolloutResult, path: str | Path, max_episodes: int = 10) -> Path:
    """A PNG of the first ``max_episodes`` rollouts of ``result``: on PointMaze the point's
    path over the maze's walls, start (circle), goal (star), green when the episode succeeded;
    elsewhere the first two observation values of every step."""
    import matplotlib.pyplot as plt

    fig, ax, cols, goal = _axes(result)
    for obs, color in _episodes(result, max_episodes):
        ax.plot(obs[:, cols[0]], obs[:, cols[1]], color=color, lw=1.2, alpha=0.8)
        ax.plot(obs[0, cols[0]], obs[0, cols[1]], "o", color=color, ms=5)
        if goal is not None:
            ax.plot(obs[0, goal[0]], obs[0, goal[1]], "*", color="k", ms=10)
    ax.autoscale_view()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight", format="png")
    plt.close(fig)
    return path


def animate_rollouts(
    result: RolloutResult, path: str | Path, max_episodes: int = 10, frames: int = 40, fps=10
) -> Path:
    """An animated GIF of the same picture as :func:`plot_rollouts`, the paths growing step by
    step (at most ``frames`` frames: long episodes are subsampled)."""
    import matplotlib.pyplot as plt
    from matplotlib.animation import FuncAnimation, PillowWriter

    fig, ax, cols, goal = _axes(result)
    episodes = _episodes(result, max_episodes)
    longest = max(len(obs) for obs, _ in episodes)
    steps = np.unique(np.linspace(1, longest, min(frames, longest)).astype(int))
    lines = [ax.plot([], [], color=c, lw=1.2)[0] for _, c in episodes]
    dots = [ax.plot([], [], "o", color=c, ms=6)[0] for _, c in episodes]
    for obs, _ in episodes:
        if goal is not None:
            ax.plot(obs[0, goal[0]], obs[0, goal[1]], "*", color="k", ms=10)
    every = np.concatenate([obs[:, list(cols)] for obs, _ in episodes])
    ax.update_datalim(every)
    ax.autoscale_view()

    def draw(n: int):
        for (obs, _), line, dot in zip(episodes, lines, dots):
            line.set_data(obs[:n, cols[0]], obs[:n, cols[1]])
            last = obs[min(n, len(obs)) - 1]
            dot.set_data([last[cols[0]]], [last[cols[1]]])
        return [*lines, *dots]

    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            animation = FuncAnimation(fig, draw, frames=steps, blit=True)
            animation.save(tmp.with_suffix(".gif"), writer=PillowWriter(fps=fps))
            tmp.with_suffix(".gif").replace(tmp)
    finally:
        plt.close(fig)
    return path
