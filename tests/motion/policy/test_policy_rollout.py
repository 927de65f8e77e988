"""What the command line builds on: policy lookup by name, loading, recorded rollout paths and
their plot, dataset statistics, and a file recorded in another env than the one asked for."""

from __future__ import annotations

import numpy as np
import pytest

from polydiff.core.errors import InputError
from polydiff.motion.policy.common import CHECKPOINTS, load_policy, make_policy
from polydiff.motion.policy.data import OfflineData, read_d4rl, write_d4rl
from polydiff.motion.policy.evaluate import policy_for, rollout
from polydiff.motion.policy.experts import pointmaze_dataset
from polydiff.motion.policy.render import animate_rollouts, plot_rollouts

UMAZE = "PointMaze_UMaze-v3"


@pytest.fixture(scope="module")
def maze() -> OfflineData:
    return pointmaze_dataset("umaze", "expert", episodes=3)


def test_rollout_records_each_episode_path_and_plots_it(tmp_path):
    expert, env_id = policy_for("expert", UMAZE)
    result = rollout(expert, env_id, [0, 1])
    assert result.successes == [True, True]
    for obs, length in zip(result.observations, result.lengths):
        assert obs.shape == (length + 1, 8)
        # the point ends within the goal's reach (PointMaze: 0.45), goal columns unchanged
        assert np.linalg.norm(obs[-1, 4:6] - obs[-1, 2:4]) <= 0.45
        np.testing.assert_array_equal(obs[:, 2:4], np.repeat(obs[:1, 2:4], len(obs), 0))
    png = plot_rollouts(result, tmp_path / "paths.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    gif = animate_rollouts(result, tmp_path / "paths.gif", frames=5)
    from PIL import Image

    with Image.open(gif) as image:
        assert image.format == "GIF" and image.n_frames == 5


def test_stats_count_episodes_and_successes(maze):
    stats = maze.stats()
    assert (stats["episodes"], stats["steps"], stats["success_rate"]) == (3, len(maze), 1.0)
    half = OfflineData.concat([maze.episodes()[0], pointmaze_dataset("umaze", "random", 1)])
    assert half.stats()["success_rate"] == 0.5


def test_make_policy_and_load_policy(tmp_path, maze):
    policy = make_policy("bc", maze, hidden=16)
    assert (policy.config.hidden, policy.config.env_id) == (16, UMAZE)
    policy.save(tmp_path / "bc")
    loaded = load_policy(tmp_path / "bc")
    for a, b in zip(policy.net.parameters(), loaded.net.parameters()):
        assert (a == b).all()
    with pytest.raises(InputError, match=r"bc\.width: not an option"):
        make_policy("bc", maze, width=3)
    with pytest.raises(InputError, match="method: unknown method 'mlp'"):
        make_policy("mlp", maze)
    with pytest.raises(InputError, match=r"config\.json: missing"):
        load_policy(tmp_path)
    with pytest.raises(InputError, match="no such folder"):
        load_policy(tmp_path / "nowhere")


def test_the_shipped_policy_is_found_for_its_env():
    policy, env_id = policy_for(None)
    assert env_id == UMAZE and policy.config.env_id == UMAZE
    # saved before the prediction option existed: its config.json has none, it loads as eps
    assert policy.prediction == "eps"
    assert (CHECKPOINTS / "umaze-diffusion" / "README.md").is_file()
    with pytest.raises(InputError, match="model=expert: the scripted expert needs"):
        policy_for("expert", "Hopper-v5", option="model")


def test_a_file_recorded_in_another_env_is_refused(tmp_path, maze):
    path = write_d4rl(tmp_path / "umaze.hdf5", maze)
    assert read_d4rl(path, env_id=UMAZE).env_id == UMAZE
    with pytest.raises(InputError, match="recorded in PointMaze_UMaze-v3, not in env_id=Point"):
        read_d4rl(path, env_id="PointMaze_Medium-v3")
