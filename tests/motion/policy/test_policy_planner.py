"""Diffuser-style planner: inpainted start and goal, training, receding-horizon actions."""

import os

import numpy as np
import pytest
import torch

from polydiff.core.errors import InputError
from polydiff.core.method import load_method
from polydiff.motion.policy.common import train_policy
from polydiff.motion.policy.experts import pointmaze_dataset
from polydiff.motion.policy.methods import DiffuserPlanner
from polydiff.motion.policy.planner import return_to_go

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
        ({"guide_scale": 0.1}, "guide_scale / candidates: need a value function"),
        ({"candidates": 4}, "guide_scale / candidates: need a value function"),
        ({"candidates": 0, "value_hidden": 8}, "candidates >= 1"),
    ],
)
def test_bad_planner_options(maze_data, options, match):
    with pytest.raises(InputError, match=match):
        small_planner(maze_data, **options)


def test_return_to_go_is_the_discounted_reward_sum_within_episodes(maze_data):
    rtg = return_to_go(maze_data, 0.9)
    for start, stop in maze_data.episode_bounds():
        r = maze_data.rewards[start:stop]
        expected = [sum(0.9**k * r[i + k] for k in range(stop - start - i)) for i in range(len(r))]
        np.testing.assert_allclose(rtg[start:stop], expected, rtol=1e-5)
    assert rtg.max() > 0  # the expert reaches its goals (reward 1 there)


class MeanAction(torch.nn.Module):
    """A known value: the mean of the (normalized) action entries of a trajectory."""

    def forward(self, x, t):
        return x[..., 8:].mean((1, 2))


def planner_with_known_value(data, **options):
    torch.manual_seed(0)  # the same untrained denoiser every time
    planner = small_planner(data, value_hidden=8, **options)
    planner.net.value = MeanAction()
    return planner


def test_value_guidance_raises_the_value_of_the_plans(maze_data):
    obs = torch.as_tensor(
        small_planner(maze_data).obs_norm.normalize(maze_data.observations[:6, None]),
        dtype=torch.float32,
    )
    values = []
    for scale in (0.0, 20.0):
        planner = planner_with_known_value(maze_data, guide_scale=scale, steps=10)
        plans = planner.plan(obs, generator=torch.Generator().manual_seed(0))
        values.append(planner.value(plans, 0.0))
        assert torch.allclose(plans[:, 0, :8], obs[:, 0], atol=1e-6)  # still inpainted
    assert (values[1] > values[0] + 0.1).all(), values


def test_ranking_executes_the_best_of_the_candidate_plans(maze_data):
    planner = planner_with_known_value(maze_data)
    obs = torch.as_tensor(planner.obs_norm.normalize(maze_data.observations[:3, None]))
    obs = obs.float()
    every = planner.plan(obs.repeat_interleave(4, 0), generator=torch.Generator().manual_seed(1))
    planner.config.candidates = 4
    planner.network_calls = 0
    best = planner.plan(obs, generator=torch.Generator().manual_seed(1))
    assert best.shape == (3, 16, 10) and planner.network_calls == 5  # one batch of 12 plans
    scores = planner.value(every, 0.0).view(3, 4)
    for i in range(3):
        assert torch.equal(best[i], every[4 * i + int(scores[i].argmax())])
    assert planner.act(maze_data.observations[:3, None]).shape == (3, 8, 2)


def test_the_value_function_learns_the_return_to_go(maze_data, tmp_path):
    torch.manual_seed(0)
    planner = small_planner(maze_data, value_hidden=64, discount=0.97)
    run = train_policy(planner, maze_data, tmp_path, steps=300, batch_size=32, lr=3e-3)
    windows = planner.windows(maze_data)
    batch = planner.batch(windows, np.arange(len(windows)))
    with torch.no_grad():
        predicted = planner.value(batch["traj"], planner.path.t_end)
    error = (predicted - batch["value"]).square().mean()
    assert error < 0.3 * batch["value"].var(), (error, batch["value"].var())
    again = load_method(run["folder"])
    with torch.no_grad():
        assert torch.equal(again.value(batch["traj"], 0.01), planner.value(batch["traj"], 0.01))
