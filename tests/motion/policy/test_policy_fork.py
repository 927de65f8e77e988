"""The obstacle fork: bimodal demonstrations whose mean action runs into the obstacle."""

import numpy as np
import pytest
import torch

from polydiff.core.errors import InputError
from polydiff.motion.policy.common import make_policy
from polydiff.motion.policy.envs import env_dims, make_env
from polydiff.motion.policy.evaluate import ScriptedChunkPolicy, rollout
from polydiff.motion.policy.fork import FORK_ID, RADIUS, ForkExpert, ModeAverage, fork_dataset


def scripted(policy):
    env = make_env(FORK_ID)
    try:
        return ScriptedChunkPolicy(policy, env.observation_space)
    finally:
        env.close()


def test_the_environment_is_found_by_its_id_and_ends_at_goal_or_obstacle():
    assert env_dims(FORK_ID) == (2, 2)
    env = make_env(FORK_ID)
    obs, _ = env.reset(seed=0)
    assert obs[1] == pytest.approx(-1.2) and abs(obs[0]) <= 0.3
    done, steps = False, 0
    while not done:  # straight up: into the obstacle
        obs, reward, done, _, info = env.step(np.array([0.0, 1.0]))
        steps += 1
    assert info["collision"] and not info["success"] and reward == 0.0
    assert np.linalg.norm(obs) < RADIUS and steps == pytest.approx(9, abs=1)
    env.close()


@pytest.mark.parametrize("side", [-1, 1])
def test_either_committed_expert_reaches_every_goal(side):
    result = rollout(scripted(ForkExpert(side)), FORK_ID, range(20))
    assert result.success_rate == 1.0
    # the episode passes the obstacle on its side
    for path in result.observations:
        beside = path[np.abs(path[:, 1]) < 0.1, 0]
        assert len(beside) and (np.sign(beside) == side).all()


def test_the_mean_of_the_two_modes_runs_into_the_obstacle():
    result = rollout(scripted(ModeAverage()), FORK_ID, range(20))
    assert result.success_rate == 0.0
    assert all(np.linalg.norm(path[-1]) < RADIUS for path in result.observations)


def test_the_demonstrations_are_bimodal_with_equal_weights():
    data = fork_dataset(episodes=200, seed=0)
    episodes = data.episodes()
    sides = np.array([ep.infos["side"][0] for ep in episodes])
    assert all((ep.infos["side"] == ep.infos["side"][0]).all() for ep in episodes)
    assert 0.4 < (sides == -1).mean() < 0.6  # binomial(200, 1/2): 4.2 standard deviations
    assert all(ep.infos["success"][-1] for ep in episodes)
    # At the start the two modes' first actions are mirror images in x ...
    first = np.stack([ep.actions[0] for ep in episodes])
    assert (np.sign(first[:, 0]) == sides).all() and (first[:, 1] > 0.4).all()
    # ... and behaviour cloning's squared-error optimum, their mean, has hardly any x.
    start = np.stack([ep.observations[0] for ep in episodes])
    mean_x = np.mean([ModeAverage()(p)[0] for p in start])
    assert abs(mean_x) < 0.1 < np.abs(first[:, 0]).mean()


def test_a_fixed_side_and_the_same_seed_repeat():
    left = fork_dataset(episodes=5, seed=3, side=-1)
    assert (left.infos["side"] == -1).all() and (left.observations[:, 0] < 0.35).all()
    np.testing.assert_array_equal(fork_dataset(5, seed=3).actions, fork_dataset(5, 3).actions)
    with pytest.raises(InputError, match="side"):
        ForkExpert(side=0)


def test_bc_trained_on_the_fork_learns_the_mean_action():
    """The MSE regressor fitted to bimodal data predicts the mean of the two modes at the start
    (x close to 0), while each demonstration's own action has |x| well above it."""
    torch.manual_seed(0)
    data = fork_dataset(episodes=40, seed=0)
    bc = make_policy("bc", data, hidden=64, depth=2, horizon=8, n_action_steps=4)
    windows = bc.windows(data)
    optim = torch.optim.Adam(bc.net.parameters(), lr=3e-3)
    rng = np.random.default_rng(0)
    for _ in range(300):
        loss = bc.loss_fn(bc.net, bc.batch(windows, rng.integers(0, len(windows), 128)))
        optim.zero_grad()
        loss.backward()
        optim.step()
    starts = np.stack([ep.observations[0] for ep in data.episodes()])
    obs = np.repeat(starts[:, None], bc.n_obs_steps, 1)
    demonstrated = np.stack([ep.actions[0] for ep in data.episodes()])
    predicted = bc.act(obs)[:, 0]
    assert np.abs(predicted[:, 0]).mean() < 0.25 < np.abs(demonstrated[:, 0]).mean()
