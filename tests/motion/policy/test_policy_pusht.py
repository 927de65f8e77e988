"""PushT (gym-pusht, state observations): the pusher's geometry and push model against the
simulator, the expert reaching the goal, the dataset round trip and refused inputs."""

import h5py
import numpy as np
import pytest

from polydiff.core.errors import InputError
from polydiff.motion.policy.data import read_d4rl, write_d4rl
from polydiff.motion.policy.envs import env_dims, make_env
from polydiff.motion.policy.evaluate import policy_for, rollout
from polydiff.motion.policy.pusht import (
    CONTACTS,
    GOAL_ANGLE,
    GOAL_ORIGIN,
    NORMALS,
    OUTLINE,
    PUSHT_ID,
    PushTExpert,
    pusht_dataset,
    rotation,
)

# Seeds on which the default expert reached coverage > 0.95 when these tests were written
# (the benchmark measures its rate on 100 test seeds: docs/benchmarks/policy.md).
SOLVED_SEEDS = (0, 1, 2)


@pytest.fixture
def env():
    env = make_env(PUSHT_ID)
    yield env
    env.close()


def test_the_outline_is_the_simulators_t(env):
    obs, _ = env.reset(seed=3)
    block = env.unwrapped.block
    corners = {tuple(np.round(block.local_to_world(v), 6)) for s in block.shapes
               for v in s.get_vertices()}  # fmt: skip
    ours = obs[2:4] + OUTLINE @ rotation(obs[4]).T
    # every corner of the two rectangles that is a corner of the T's outline
    assert all(np.min(np.linalg.norm(np.array(list(corners)) - p, axis=1)) < 1e-6 for p in ours)
    # contact normals point out of the T: a point just outside is outside both rectangles
    outside = CONTACTS + 0.5 * NORMALS
    inside = CONTACTS - 0.5 * NORMALS
    in_box = [((p >= [-60, 0]) & (p <= [60, 30])).all()
              or ((p >= [-15, 30]) & (p <= [15, 120])).all()
              for p in np.vstack([outside, inside])]  # fmt: skip
    assert not any(in_box[: len(CONTACTS)]) and all(in_box[len(CONTACTS) :])


def test_the_goal_pose_has_zero_error_and_full_coverage(env):
    env.reset(seed=0)
    u = env.unwrapped
    u.block.angle = GOAL_ANGLE  # first: pymunk turns the block about its centre of gravity
    u.block.position = GOAL_ORIGIN.tolist()
    assert u._get_coverage() == pytest.approx(1.0)
    obs = np.array([100.0, 100.0, *GOAL_ORIGIN, GOAL_ANGLE + 2 * np.pi])  # angle mod 2 pi
    np.testing.assert_allclose(PushTExpert.pose_error(obs), 0.0, atol=1e-9)


@pytest.mark.parametrize("contact", [0, 9, 30])
def test_the_push_model_predicts_the_simulated_motion(env, contact):
    """Lined up behind one contact, the disc pushes 10 pixels: the block's centre of gravity
    and angle move in the direction the frictionless push model predicts."""
    expert = PushTExpert()
    obs, _ = env.reset(options={"reset_to_state": [60.0, 60.0, 256.0, 256.0, 0.3]})
    points, push, motion = expert._pushes(obs)
    start = points[contact] - push[contact] * 16.0
    u = env.unwrapped
    u.agent.position, u.agent.velocity = start.tolist(), (0.0, 0.0)
    before = PushTExpert.pose_error(u.get_obs())
    for _ in range(3):
        after = PushTExpert.pose_error(env.step(points[contact] + 10.0 * push[contact])[0])
    moved = before - after  # the pose change, in the units of ``motion``
    cosine = moved @ motion[contact] / (np.linalg.norm(moved) * np.linalg.norm(motion[contact]))
    assert np.linalg.norm(moved) > 3.0 and cosine > 0.95


def test_the_expert_solves_fixed_seeds_and_comes_close_on_others():
    policy, env_id = policy_for("expert", PUSHT_ID)
    result = rollout(policy, env_id, SOLVED_SEEDS)
    assert all(result.successes) and result.summary()["mean_max_reward"] == 1.0
    assert all(length < 300 for length in result.lengths)  # ended at the goal


def test_lockstep_expert_rollouts_equal_single_ones():
    """Each environment gets its own copy of the expert (its contact is per episode)."""
    policy, _ = policy_for("expert", PUSHT_ID)
    together = rollout(policy, PUSHT_ID, [5, 6], max_steps=60)
    alone = [rollout(policy, PUSHT_ID, [s], max_steps=60) for s in (5, 6)]
    for i, single in enumerate(alone):
        np.testing.assert_array_equal(together.observations[i], single.observations[0])


def test_the_dataset_round_trips_and_records_success(tmp_path):
    data = pusht_dataset("noisy", episodes=2, seed=0, noise=5.0)
    assert env_dims(PUSHT_ID) == (5, 2) and (data.obs_dim, data.act_dim) == (5, 2)
    assert data.stats()["episodes"] == 2 and data.infos["success"].dtype == bool
    assert ((data.actions >= 0) & (data.actions <= 512)).all()  # clipped to the table
    back = read_d4rl(write_d4rl(tmp_path / "pusht.hdf5", data))
    assert back.env_id == PUSHT_ID
    for key in ("observations", "actions", "rewards", "terminals", "timeouts"):
        np.testing.assert_array_equal(getattr(back, key), getattr(data, key))
    np.testing.assert_array_equal(back.infos["success"], data.infos["success"])
    again = pusht_dataset("noisy", episodes=2, seed=0, noise=5.0)
    np.testing.assert_array_equal(again.actions, data.actions)  # same seed, same data


def _with_obs_columns(tmp_path, columns: int) -> str:
    data = pusht_dataset("random", episodes=1, seed=0)
    path = write_d4rl(tmp_path / "pusht.hdf5", data)
    with h5py.File(path, "r+") as f:
        for key in ("observations", "next_observations"):
            obs = f[key][()]
            del f[key]
            f[key] = np.pad(obs, ((0, 0), (0, max(columns - 5, 0))))[:, :columns]
    return str(path)


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda tmp: pusht_dataset("multimodal"), "variant: unknown PushT variant 'multimodal'"),
        (lambda tmp: read_d4rl(_with_obs_columns(tmp, 4)), "observations have 4 columns"),
        (lambda tmp: read_d4rl(_with_obs_columns(tmp, 7)), "gym_pusht/PushT-v0 observations"),
        (lambda tmp: policy_for("expert", "PointMaze_UMaze-v3x"), "unknown environment"),
        (
            lambda tmp: policy_for("expert", "polydiff/ObstacleFork-v0"),
            "policy=expert: the scripted expert needs",
        ),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path, make, needle):
    with pytest.raises(InputError, match=needle.replace("(", r"\(")) as err:
        make(tmp_path)
    assert "\n" not in str(err.value)
