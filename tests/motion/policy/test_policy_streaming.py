"""Streaming Diffusion Policy: buffer levels, exact streaming with an oracle denoiser, training."""

import numpy as np
import pytest
import torch
from torch import nn

from polydiff.core.errors import InputError
from polydiff.core.method import load_method
from polydiff.core.utils import append_dims
from polydiff.motion.policy.common import train_policy
from polydiff.motion.policy.evaluate import evaluate
from polydiff.motion.policy.experts import pointmaze_dataset
from polydiff.motion.policy.methods import StreamingPolicy, StreamingPolicyConfig

EPISODIC = {"continuing_task": False}


def make_policy(**options):
    config = dict(obs_dim=1, act_dim=2, horizon=20, n_obs_steps=2, n_action_steps=8, levels=10)
    config.update(channels=8, channel_mult=(1, 2), **options)
    return StreamingPolicy(StreamingPolicyConfig(**config))


def test_levels_rise_chunk_by_chunk():
    policy = make_policy()  # H 20, To 2, Ta 8: past [0], chunks [1..8], [9..16], tail [17..19]
    assert policy.chunks == 2 and policy.drop == 5
    start = policy.levels_at(0)
    assert start.tolist() == [-1] + [4] * 8 + [9] * 8 + [9] * 3
    end = policy.levels_at(policy.drop)  # chunk 0 clean, chunk 1 where chunk 0 started
    assert end.tolist() == [-1] + [-1] * 8 + [4] * 8 + [9] * 3
    with pytest.raises(InputError, match="levels: 9 must be a multiple of the 2"):
        make_policy(levels=9)


def target(k):
    """The action at absolute time k (2-D)."""
    k = torch.as_tensor(k, dtype=torch.float64)
    return 0.8 * torch.stack([torch.sin(0.3 * k), torch.cos(0.2 * k)], -1)


class Oracle(nn.Module):
    """The exact noise prediction for the known action sequence; the observation is the
    current absolute time step."""

    def __init__(self, policy):
        super().__init__()
        self.policy = policy

    def forward(self, x, t, cond):
        c, path = self.policy.config, self.policy.path
        steps = cond[:, -1:].double() + torch.arange(c.horizon) - (c.n_obs_steps - 1)
        x0 = target(steps).to(x.dtype)
        alpha = append_dims(path.alpha(t.double()), 3).to(x.dtype)
        sigma = append_dims(path.sigma(t.double()), 3).to(x.dtype)
        return (x - alpha * x0) / sigma


@pytest.mark.parametrize("solver", ["ddim", "ddpm", "dpmpp_2m"])
def test_streaming_with_an_exact_denoiser_executes_the_true_actions(solver):
    """Partly denoised chunks carried over control steps (and shifted by Ta) end exactly at the
    true actions: the buffer's bookkeeping is right. Calls: N at the start, N / h after."""
    policy = make_policy(solver=solver)
    policy.net = Oracle(policy)
    policy.reset(3)
    for step in range(4):
        k = 8 * step
        obs = np.array([[[k - 1], [k]]] * 3, np.float32)
        policy.network_calls = 0
        actions = policy.act(obs)
        assert policy.network_calls == (10 if step == 0 else 5)
        # sigma(t_end) ~ 0.014 of noise is left, as in any sampler ending at t_end.
        np.testing.assert_allclose(
            actions, target(np.arange(k, k + 8)).expand(3, -1, -1), atol=0.06
        )


def test_streams_follow_their_rows():
    """Only the running environments' buffers advance (the evaluator passes rows=)."""
    policy = make_policy()
    policy.net = Oracle(policy)
    policy.reset(3)
    first = policy.act(np.array([[[-1], [0]]] * 3, np.float32))
    kept = policy.buffer[1].clone()
    second = policy.act(np.array([[[7], [8]]] * 2, np.float32), rows=np.array([0, 2]))
    assert torch.equal(policy.buffer[1], kept)
    np.testing.assert_allclose(second, target(np.arange(8, 16)).expand(2, -1, -1), atol=0.06)
    assert first.shape == (3, 8, 2)
    # After a step the buffer is the denoised one shifted by Ta, with fresh noise behind.
    out = policy.predict(torch.tensor([[[15.0], [16.0]]] * 3))
    assert torch.equal(policy.buffer[:, :12], out[:, 8:])
    assert policy.current.tolist() == [-1] + [4] * 8 + [9] * 11


def test_training_mixes_noise_and_learns(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.set_num_threads(1)
    data = pointmaze_dataset("umaze", "expert", episodes=8, seed=0)
    policy = StreamingPolicy.for_data(
        data, horizon=12, n_obs_steps=2, n_action_steps=4, levels=4, channels=16,
        channel_mult=(1, 2),
    )  # fmt: skip
    run = train_policy(policy, data, "run", steps=150, batch_size=32, lr=2e-3, log_every=1)
    losses = run["losses"]
    assert np.mean(losses[-20:]) < 0.5 * np.mean(losses[:10])
    again = load_method(policy.save(tmp_path / "sdp"))
    assert again.config == policy.config and (again.chunks, again.drop) == (2, 2)


def test_the_loss_regresses_the_configured_prediction():
    """x0-prediction: a network returning the true actions has zero loss; eps-prediction: a
    network returning zeros has the noise's mean square (about 1) as its loss."""
    torch.manual_seed(0)
    batch = {"obs": torch.zeros(256, 2, 1), "action": torch.rand(256, 20, 2) * 2 - 1}
    x0 = make_policy(prediction="x0")
    assert x0.loss_fn(lambda x, t, c: batch["action"], batch).item() == 0.0
    eps = make_policy(prediction="eps")
    assert eps.loss_fn(lambda x, t, c: torch.zeros_like(x), batch).item() == pytest.approx(1, 0.05)


def test_evaluator_keeps_one_stream_per_environment(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MuJoCo writes MUJOCO_LOG.TXT into the working folder
    data = pointmaze_dataset("umaze", "expert", episodes=1, seed=0)
    policy = StreamingPolicy.for_data(data, channels=8, channel_mult=(1, 2), levels=10)
    result = evaluate(policy, data.env_id, [0, 1, 2], env_kwargs=EPISODIC, max_steps=20)
    assert result.steps == 20 and result.network_calls == 10 + 5 + 5  # steps 0, 8, 16
    assert policy.buffer.shape == (3, 20, 2)
