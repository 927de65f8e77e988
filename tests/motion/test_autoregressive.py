"""The frame-by-frame streamer (AAMDM-style): training examples, what the denoiser may see,
streaming against whole-clip sampling, a tiny training run, save/load."""

from pathlib import Path

import pytest
import torch

import polydiff.motion.mdm as mdm_module
from polydiff.core import load_method
from polydiff.core.errors import InputError
from polydiff.motion.autoregressive import MotionStreamer, StreamConfig, load_streamer
from polydiff.motion.mdm import load_mdm


def tiny(dataset, **changes):
    torch.manual_seed(0)
    options = dict(frames=16, d_model=32, n_layers=1, n_heads=2, history=4, steps=2)
    method = MotionStreamer(StreamConfig(**(options | changes)))
    method.set_normalizer(dataset.normalizer)
    return method


def test_examples_pair_each_frame_with_the_frames_before_it(dataset):
    method = tiny(dataset)
    frames = torch.arange(64 * 16, dtype=torch.float32).view(64, 16, 1)  # frame p of window i
    windows = frames.expand(64, 16, 263)  # holds the number 16 i + p
    history, valid, target = method._examples(windows, torch.Generator().manual_seed(0))
    assert history.shape == (64, 4, 263) and target.shape == (64, 1, 263)
    position = target[:, 0, 0].long() - 16 * torch.arange(64)
    assert ((position >= 0) & (position < 16)).all()
    before = position[:, None] + torch.arange(-4, 0)
    assert torch.equal(valid, before >= 0)
    assert torch.equal(
        history[..., 0][valid], (before + 16 * torch.arange(64)[:, None])[valid].float()
    )
    assert (~valid).any() and valid.all(1).any()  # both window starts and full histories


def test_missing_history_frames_are_invisible(dataset):
    method = tiny(dataset)
    torch.nn.init.normal_(method.net.blocks[0].modulation.weight, std=0.1)
    method.net.eval()
    history, x_t = torch.randn(2, 4, 263), torch.randn(2, 1, 263)
    valid = torch.tensor([[False, False, True, True]] * 2)
    t, action = torch.full((2,), 0.5), torch.tensor([1, 3])
    out = method.predict(method.net, history, valid, x_t, t, action)
    garbage = history.clone()
    garbage[:, :2] = 100.0  # what lies in the missing slots does not matter
    assert torch.equal(method.predict(method.net, garbage, valid, x_t, t, action), out)
    seen = history.clone()
    seen[:, 3] += 1.0  # a real frame does
    assert not torch.allclose(method.predict(method.net, seen, valid, x_t, t, action), out)


def test_streaming_yields_the_same_frames_as_a_whole_clip(dataset):
    method = tiny(dataset)
    torch.nn.init.normal_(method.net.action.weight)
    clip = method.sample(["walk", "jump"], frames=6, generator=torch.Generator().manual_seed(0))
    assert clip.shape == (2, 6, 263) and torch.isfinite(clip).all()
    stream = method.stream(["walk", "jump"], generator=torch.Generator().manual_seed(0))
    frames = torch.cat([next(stream) for _ in range(6)], 1)
    assert torch.allclose(method.denormalize(frames), clip)
    calls = []
    method.net.register_forward_hook(lambda *args: calls.append(1))
    next(stream)
    assert len(calls) == 2  # config.steps denoiser calls per frame
    guided = method.sample(
        ["walk", "jump"], frames=6, guidance=2.0, generator=torch.Generator().manual_seed(0)
    )
    assert not torch.allclose(guided, clip)


def test_tiny_training_lowers_the_loss_and_the_model_round_trips(dataset, tmp_path):
    method = tiny(dataset)
    batch = {"x": dataset.features, "action": dataset.actions}

    def fixed_loss():
        with torch.no_grad():
            losses = method.loss_fn(method.net, batch, generator=torch.Generator().manual_seed(1))
        return float(losses["loss"])

    before = fixed_loss()
    optimizer = torch.optim.Adam(method.net.parameters(), lr=2e-3)
    generator = torch.Generator().manual_seed(2)
    for _ in range(60):
        loss = method.loss_fn(method.net, batch, generator=generator)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert fixed_loss() < 0.6 * before
    folder = method.save(tmp_path / "stream")
    again = load_method(folder)
    assert isinstance(again, MotionStreamer) and again.config == method.config
    assert isinstance(load_mdm(folder), MotionStreamer)  # the CLI's loader takes it too
    seed = torch.Generator().manual_seed
    assert torch.equal(
        again.sample(["run"], generator=seed(4)), method.sample(["run"], generator=seed(4))
    )


def test_shipped_streamer_streams_frames():
    method = load_streamer()
    assert method.config.history == 10 and method.config.d_model == 128
    stream = method.stream(["walk", "run"], generator=torch.Generator().manual_seed(0))
    frames = torch.cat([next(stream) for _ in range(3)], 1)
    assert frames.shape == (2, 3, 263) and torch.isfinite(frames).all()
    with pytest.raises(InputError, match="not an autoregressive streamer"):
        load_streamer(Path(mdm_module.__file__).parent / "checkpoints" / "mdm-procedural")
