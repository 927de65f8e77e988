"""Scripted PointMaze expert and the built-in datasets it writes in the D4RL layout."""

import numpy as np
import pytest

from polydiff.core.errors import InputError
from polydiff.motion.policy.data import read_d4rl, write_d4rl
from polydiff.motion.policy.experts import cell_distances, pointmaze_dataset


@pytest.fixture(autouse=True)
def _run_in_tmp(tmp_path, monkeypatch):
    """MuJoCo writes MUJOCO_LOG.TXT into the working folder on model warnings."""
    monkeypatch.chdir(tmp_path)


def test_bfs_distances_on_a_small_grid():
    free = np.array(
        [
            [0, 0, 0, 0, 0],
            [0, 1, 1, 1, 0],
            [0, 0, 0, 1, 0],
            [0, 1, 1, 1, 0],
            [0, 0, 0, 0, 0],
        ],
        bool,
    )
    dist = cell_distances(free, (3, 1))
    assert dist[3, 1] == 0 and dist[3, 3] == 2 and dist[1, 1] == 6
    assert (dist[~free] == -1).all()


@pytest.mark.parametrize(("maze", "episodes"), [("umaze", 6), ("medium", 3)])
def test_expert_reaches_every_goal(maze, episodes):
    data = pointmaze_dataset(maze, "expert", episodes=episodes, seed=3)
    eps = data.episodes()
    assert len(eps) == episodes
    for ep in eps:  # each episode ends at the goal, before the time limit
        assert ep.terminals[-1] and not ep.timeouts.any() and ep.infos["success"][-1]
        # achieved_goal (columns 0-1 of the flat observation) is within 0.45 of the goal.
        assert np.linalg.norm(ep.next_observations[-1, :2] - ep.infos["goal"][-1]) <= 0.45
    assert data.obs_dim == 8 and data.act_dim == 2 and np.abs(data.actions).max() <= 1.0


def test_variants_differ_as_intended():
    expert = pointmaze_dataset("umaze", "expert", episodes=4, seed=0)
    noisy = pointmaze_dataset("umaze", "noisy", episodes=4, seed=0)
    random = pointmaze_dataset("umaze", "random", episodes=4, seed=0)
    # Same start states (the env reset seeds are shared), different actions.
    np.testing.assert_array_equal(expert.observations[0], noisy.observations[0])
    assert not np.allclose(expert.actions[:5], noisy.actions[:5])
    # Random actions rarely reach the goal: episodes mostly run to the 300-step limit.
    assert len(random) > 2 * len(expert)
    assert sum(ep.timeouts[-1] for ep in random.episodes()) >= 2
    # The same seed gives the same data.
    again = pointmaze_dataset("umaze", "noisy", episodes=4, seed=0)
    np.testing.assert_array_equal(again.actions, noisy.actions)


def test_multimodal_variant_takes_other_shortest_routes():
    expert = pointmaze_dataset("medium", "expert", episodes=12, seed=0).episodes()
    multi = pointmaze_dataset("medium", "multimodal", episodes=12, seed=0).episodes()
    differ = [
        i
        for i, (a, b) in enumerate(zip(expert, multi))
        if len(a) != len(b) or not np.array_equal(a.actions, b.actions)
    ]
    assert len(differ) >= 2  # start / goal pairs with two shortest routes
    for a, b in zip(expert, multi):  # the same start, goal and success; lengths about equal
        np.testing.assert_array_equal(a.observations[0], b.observations[0])
        assert b.terminals[-1] and abs(len(a) - len(b)) <= 0.1 * len(a)


def test_written_dataset_reads_back_identically(tmp_path):
    data = pointmaze_dataset("umaze", "noisy", episodes=3, seed=1)
    back = read_d4rl(write_d4rl(tmp_path / "pointmaze-umaze-noisy.hdf5", data))
    assert back.env_id == "PointMaze_UMaze-v3"
    assert back.arrays().keys() == data.arrays().keys()
    for key, value in data.arrays().items():
        np.testing.assert_array_equal(back.arrays()[key], value, err_msg=key)
    assert back.episode_bounds() == data.episode_bounds()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"maze": "tiny"}, "maze: unknown maze 'tiny'"), ({"variant": "medium"}, "variant:")],
)
def test_bad_dataset_options(kwargs, match):
    with pytest.raises(InputError, match=match):
        pointmaze_dataset(**kwargs)
