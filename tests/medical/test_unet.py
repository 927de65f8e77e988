"""The 2D slice U-Net: shapes, conditioning, config round trip, gradients, a tiny overfit."""

from __future__ import annotations

import json

import pytest
import torch

from polydiff.medical.nets import PRESETS, SliceUNet, SliceUNetConfig

TINY = SliceUNetConfig(channels=8, channel_mult=(1, 2), num_res_blocks=1, attention_levels=(1,))


@torch.no_grad()
def test_output_shape_and_noise_broadcast():
    torch.manual_seed(0)
    net = SliceUNet(TINY).eval()
    x = torch.randn(3, 1, 16, 24)
    out = net(x, 0.5)
    assert out.shape == x.shape
    torch.testing.assert_close(out, net(x, torch.full((3,), 0.5)))
    two = SliceUNet(SliceUNetConfig(in_channels=2, out_channels=3, channels=8, channel_mult=(1,)))
    assert two(torch.randn(2, 2, 8, 8), torch.tensor([0.1, 0.9])).shape == (2, 3, 8, 8)


@torch.no_grad()
def test_noise_level_conditions_the_output():
    torch.manual_seed(0)
    net = SliceUNet(TINY).eval()
    x = torch.randn(2, 1, 16, 16)
    assert float((net(x, 1.0) - net(x, 500.0)).abs().max()) > 1e-4
    # per-sample noise levels: row 0 uses its own level only
    mixed = net(x, torch.tensor([1.0, 500.0]))
    torch.testing.assert_close(mixed[:1], net(x[:1], 1.0))


def test_presets_and_config_round_trip():
    small = SliceUNet(SliceUNetConfig.preset("cpu-small"))
    n_params = sum(p.numel() for p in small.parameters())
    assert 0.3e6 < n_params < 1.0e6  # the CPU-trainable size of the notes
    cfg = SliceUNetConfig.preset("gpu-base")
    assert SliceUNetConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert set(PRESETS) == {"cpu-small", "gpu-base"}


def test_bad_config_and_input():
    with pytest.raises(ValueError, match="unknown U-Net preset"):
        SliceUNetConfig.preset("huge")
    with pytest.raises(ValueError, match="groups"):
        SliceUNetConfig(channels=12, groups=8)
    with pytest.raises(ValueError, match="attention_levels"):
        SliceUNetConfig(attention_levels=(5,))
    with pytest.raises(ValueError, match="unknown U-Net config keys"):
        SliceUNetConfig.from_dict({"width": 3})
    net = SliceUNet(TINY)
    with pytest.raises(ValueError, match="divisible by 2"):
        net(torch.zeros(1, 1, 15, 16), 0.0)
    with pytest.raises(ValueError, match=r"expects \(B, 1, H, W\)"):
        net(torch.zeros(1, 16, 16), 0.0)


def test_gradients_reach_every_parameter_and_overfit():
    torch.manual_seed(0)
    net = SliceUNet(TINY)
    clean = torch.rand(4, 1, 16, 16)
    noisy = clean + 0.3 * torch.randn_like(clean)
    loss = ((net(noisy, 0.3) - clean) ** 2).mean()
    loss.backward()
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in net.parameters())
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    first = float(loss.detach())
    for _ in range(60):
        opt.zero_grad()
        loss = ((net(noisy, 0.3) - clean) ** 2).mean()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.2 * first
