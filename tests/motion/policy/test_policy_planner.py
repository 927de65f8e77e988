"""Diffuser-style planner: inpainted start and goal, training, receding-horizon actions."""

import os

import numpy as np
import pytest
import torch

from polydiff.core.errors import InputError
from polydiff.motion.policy.common import train_policy
from polydiff.motion.policy.experts import pointmaze_dataset
from polydiff.motion.policy.methods import DiffuserPlanner

GOAL = {"goal_columns": (0, 1), "goal_source": (2, 3)}  # achieved_goal <- desired_goal


@pytest.fixture(scope="module")
def maze_data(tmp_path_factory):
    here = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("mujoco"))  # MuJoCo writes MUJOCO_LOG.TXT there
    try:
        return pointmaze_dataset("umaze", "expert", episodes=6, seed=0)
    finally:
        os.chdir(here)


def small_planner(data, **options):
    config = dict(horizon=16, channels=16, channel_mult=(1, 2), steps=5, **GOAL)
    return DiffuserPlanner.for_data(data, **{**config, **options})


def test_plans_start_at_the_observation_and_end_at_the_goal(maze_data):
    planner = small_planner(maze_data)
    obs = maze_data.observations[[0, 10, 20]][:, None]
    x = torch.as_tensor(planner.obs_norm.normalize(obs), dtype=torch.float32)
    plan = planner.plan(x)
    assert plan.shape == (3, 16, 10) and planner.network_calls == 5
    np.testing.assert_allclose(
        planner.obs_norm.unnormalize(plan[:, 0, :8].numpy()), obs[:, 0], atol=1e-4
    )
    last = planner.obs_norm.unnormalize(plan[:, -1, :8].numpy())
    np.testing.assert_allclose(last[:, :2], obs[:, 0, 2:4], atol=1e-4)  # at the goal
    assert planner.act(obs).shape == (3, 8, 2)


def test_training_lowers_the_loss(maze_data, tmp_path):
    torch.set_num_threads(1)
    planner = small_planner(maze_data)
    run = train_policy(planner, maze_data, tmp_path, steps=120, batch_size=32, lr=3e-3, log_every=1)
    losses = run["losses"]
    assert np.mean(losses[-20:]) < 0.5 * np.mean(losses[:10])


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"n_obs_steps": 2}, "n_obs_steps: the planner conditions on 1"),
        ({"goal_columns": (0,), "goal_source": (2, 3)}, "same length"),
        ({"goal_columns": (0, 9), "goal_source": (2, 3)}, r"goal_columns: columns \[9\]"),
        ({"horizon": 17}, "horizon: 17 must be a multiple of 2"),
    ],
)
def test_bad_planner_options(maze_data, options, match):
    with pytest.raises(InputError, match=match):
        small_planner(maze_data, **options)
