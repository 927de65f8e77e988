"""Rollout evaluator, diffusion policy and BC baseline: chunking, sampling, training, saving."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from polydiff.core.errors import InputError
from polydiff.core.method import load_method
from polydiff.motion.policy.common import train_policy
from polydiff.motion.policy.data import OfflineData
from polydiff.motion.policy.envs import make_env
from polydiff.motion.policy.evaluate import ScriptedChunkPolicy, evaluate
from polydiff.motion.policy.experts import PointMazeExpert, pointmaze_dataset
from polydiff.motion.policy.methods import BCPolicy, DiffusionPolicy, FlowPolicy

UMAZE = "PointMaze_UMaze-v3"
EPISODIC = {"continuing_task": False}


@pytest.fixture(autouse=True)
def _run_in_tmp(tmp_path, monkeypatch):
    """MuJoCo writes MUJOCO_LOG.TXT into the working folder on model warnings."""
    monkeypatch.chdir(tmp_path)
    torch.set_num_threads(1)


def test_evaluator_with_the_scripted_expert():
    env = make_env(UMAZE, **EPISODIC)
    expert = ScriptedChunkPolicy(PointMazeExpert(env), env.observation_space)
    result = evaluate(expert, UMAZE, [0, 1, 2], env_kwargs=EPISODIC)
    assert result.successes == [True] * 3 and result.mean_return == 1.0
    # Same seeds, same episodes: the rollouts replay the dataset's expert episodes exactly.
    data = pointmaze_dataset("umaze", "expert", episodes=3, seed=0)
    assert result.lengths == [len(e) for e in data.episodes()]
    cut = evaluate(expert, UMAZE, [0, 1, 2], env_kwargs=EPISODIC, max_steps=5)
    assert cut.successes == [False] * 3 and cut.lengths == [5, 5, 5]


class PushChunks:
    """Chunks of k equal actions (a push to the right); counts its calls."""

    n_obs_steps = 2

    def __init__(self, k):
        self.k, self.network_calls, self.seen = k, 0, []

    def act(self, obs):
        self.network_calls += 1
        self.seen.append(obs.copy())
        return np.full((len(obs), self.k, 2), [1.0, 0.0])


def test_evaluator_executes_whole_chunks_and_stacks_observations():
    policy = PushChunks(4)
    result = evaluate(policy, UMAZE, [5, 6], env_kwargs=EPISODIC, max_steps=10)
    assert result.steps == 10 and result.network_calls == 3  # steps 0, 4, 8
    assert result.summary()["network_calls_per_action"] == pytest.approx(0.3)
    first, second = policy.seen[0], policy.seen[1]
    assert first.shape == (2, 2, 8)
    np.testing.assert_array_equal(first[:, 0], first[:, 1])  # reset observation repeated
    assert not np.array_equal(second[:, 0], second[:, 1])  # then the last two observations


def toy_data(n=400, seed=0):
    """One-step episodes whose action is a fixed function of the observation (a window of
    H = 4 with Ta = 4 repeats it: the chunk is that action four times)."""
    rng = np.random.default_rng(seed)
    obs = rng.uniform(-1, 1, (n, 2))
    actions = np.tanh(obs @ np.array([[1.0, -0.5], [0.5, 1.0]]))
    return OfflineData(obs, actions, np.zeros(n), np.ones(n, bool))


def test_receding_horizon_executes_the_actions_after_the_current_observation():
    policy = BCPolicy.for_data(toy_data(), horizon=8, n_obs_steps=3, n_action_steps=4)
    ramp = torch.arange(8.0)[None, :, None].repeat(1, 1, 2)
    policy.net = torch.nn.Sequential(torch.nn.Linear(6, 1), torch.nn.Flatten(0))
    policy.predict = lambda obs: ramp.expand(len(obs), -1, -1)
    chunk = policy.act(np.zeros((5, 3, 2), np.float32))
    expected = policy.action_norm.unnormalize(ramp[0, 2:6].numpy())
    assert chunk.shape == (5, 4, 2)
    np.testing.assert_allclose(chunk[0], expected, rtol=1e-6)
    with pytest.raises(InputError, match=r"observations: expected \(batch, 3, 2\)"):
        policy.act(np.zeros((5, 2, 2)))


@pytest.mark.parametrize(
    ("cls", "options", "samplers"),
    [
        (DiffusionPolicy, {}, [("ddim", 10, 10), ("dpmpp_2m", 5, 5), ("ddpm", 20, 20)]),
        (DiffusionPolicy, {"prediction": "v", "obs_encoder": 32}, [("ddim", 10, 10)]),
        (DiffusionPolicy, {"prediction": "x0"}, [("dpmpp_2m", 5, 5)]),
        (FlowPolicy, {}, [("flow_euler", 1, 1), ("flow_euler", 2, 2)]),
    ],
)
def test_generative_policies_learn_a_deterministic_map(cls, options, samplers, tmp_path):
    data = toy_data()
    policy = cls.for_data(
        data, horizon=4, n_obs_steps=1, n_action_steps=4, channels=16, channel_mult=(1, 2),
        **options,
    )  # fmt: skip
    run = train_policy(policy, data, tmp_path, steps=300, batch_size=128, lr=4e-3, log_every=1)
    losses = run["losses"]
    assert run["steps"] == 300 and len(losses) == 300
    assert np.mean(losses[-50:]) < 0.3 * np.mean(losses[:20])
    obs = data.observations[:32, None]
    for solver, steps, nfe in samplers:  # (solver, steps, network calls per chunk)
        policy.network_calls = 0
        chunk = policy.act(obs, solver=solver, steps=steps)
        assert policy.network_calls == nfe and chunk.shape == (32, 4, 2)
        err = np.abs(chunk - data.actions[:32, None]).mean()
        assert err < 0.1, (solver, err)  # actions span about [-0.9, 0.9]


def test_saved_policies_load_with_their_normalizers(tmp_path):
    data = toy_data(50)
    for policy in (
        BCPolicy.for_data(data, hidden=16, horizon=4, n_obs_steps=1, n_action_steps=2),
        DiffusionPolicy.for_data(
            data, channels=8, channel_mult=(1, 2), horizon=4, n_obs_steps=1, n_action_steps=4
        ),
        FlowPolicy.for_data(
            data, channels=8, channel_mult=(1, 2), horizon=4, n_obs_steps=1, n_action_steps=4
        ),
        DiffusionPolicy.for_data(
            data,
            channels=8,
            channel_mult=(1, 2),
            horizon=4,
            n_obs_steps=1,
            n_action_steps=4,
            prediction="v",
            obs_encoder=16,
        ),
    ):
        folder = policy.save(tmp_path / f"{policy.name}-{getattr(policy.config, 'prediction', '')}")
        again = load_method(folder)
        assert type(again) is type(policy) and again.config == policy.config
        # a fresh process finds the class from the saved domain name alone
        code = "import sys; from polydiff.core.method import load_method; "
        code += "print(load_method(sys.argv[1]).name)"
        out = subprocess.run(
            [sys.executable, "-c", code, str(folder)], capture_output=True, text=True
        )
        assert out.stdout.strip() == policy.name, out.stderr[-2000:]
        obs = data.observations[:3, None]
        torch.manual_seed(0)
        a = policy.act(obs)
        torch.manual_seed(0)
        np.testing.assert_array_equal(again.act(obs), a)


def test_bc_trained_on_expert_data_reaches_goals(tmp_path):
    data = pointmaze_dataset("umaze", "expert", episodes=30, seed=100)
    policy = BCPolicy.for_data(data, hidden=64, horizon=8, n_obs_steps=2, n_action_steps=4)
    train_policy(policy, data, tmp_path, steps=600, batch_size=128, lr=2e-3)
    result = evaluate(policy, UMAZE, range(6), env_kwargs=EPISODIC)
    assert result.success_rate >= 5 / 6, result.summary()
    assert result.network_calls == result.steps // 4 + (result.steps % 4 > 0)


def test_training_resumes_where_it_stopped(tmp_path):
    """train_policy runs on the core's fit: a rerun in the same folder continues from its
    checkpoint and ends with the weights of one uninterrupted run; the saved model is the EMA."""
    data = toy_data(64)

    def fresh():
        torch.manual_seed(0)
        return DiffusionPolicy.for_data(
            data, channels=8, channel_mult=(1, 2), horizon=4, n_obs_steps=1, n_action_steps=4
        )

    straight = fresh()
    run = train_policy(straight, data, tmp_path / "a", steps=12, batch_size=16, lr=1e-3)
    assert run["steps"] == 12 and (tmp_path / "a" / "checkpoints" / "last.ckpt").is_file()
    resumed = fresh()
    train_policy(resumed, data, tmp_path / "b", steps=7, batch_size=16, lr=1e-3)
    run = train_policy(resumed, data, tmp_path / "b", steps=12, batch_size=16, lr=1e-3)
    assert run["steps"] == 12
    for a, b in zip(straight.net.state_dict().values(), resumed.net.state_dict().values()):
        assert torch.equal(a, b)
    initial = fresh().net.state_dict().values()
    assert any(not torch.equal(a, b) for a, b in zip(initial, resumed.net.state_dict().values()))
    saved = load_method(run["folder"])
    for a, b in zip(saved.net.state_dict().values(), resumed.net.state_dict().values()):
        assert torch.equal(a, b)


def test_a_policy_for_another_task_is_refused():
    data = pointmaze_dataset("umaze", "expert", episodes=1, seed=0)
    policy = BCPolicy.for_data(data, hidden=8, horizon=4, n_obs_steps=1, n_action_steps=1)
    with pytest.raises(InputError, match="env_id: the policy was trained for PointMaze_UMaze-v3"):
        evaluate(policy, "PointMaze_Medium-v3", [0])
    policy.config.env_id = None
    with pytest.raises(InputError, match="takes 8 observations / 2 actions, Hopper-v5 has 11 / 3"):
        evaluate(policy, "Hopper-v5", [0])


@pytest.mark.parametrize(
    ("cls", "options", "match"),
    [
        (BCPolicy, {"horizon": 4, "n_obs_steps": 2, "n_action_steps": 4}, "horizon: 4 is shorter"),
        (BCPolicy, {"n_action_steps": 0}, "n_action_steps must be a positive integer"),
        (DiffusionPolicy, {"horizon": 10, "n_action_steps": 4}, "horizon: 10 must be a multiple"),
        (FlowPolicy, {"n_obs_steps": 2.5}, "n_obs_steps must be a positive integer"),
        (DiffusionPolicy, {"prediction": "score"}, "prediction: 'score' is not one of eps, x0"),
        (FlowPolicy, {"prediction": "eps"}, "prediction: 'eps' is not one of velocity"),
    ],
)
def test_bad_policy_options(cls, options, match):
    with pytest.raises(InputError, match=match):
        cls.for_data(toy_data(10), **options)
