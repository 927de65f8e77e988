"""Pieces of the core demo stage: toy data and the network."""

from __future__ import annotations

import pytest
import torch

from polydiff.apps.toy2d import DATASETS, ToyMLP, make_data


def test_toy_distributions():
    ring = make_data("eight_gaussians", 4000, 0)
    assert ring.norm(dim=1).mean().item() == pytest.approx(2.0, abs=0.02)
    board = make_data("checkerboard", 4000, 0)
    cell = torch.floor(board + 2.0)
    assert ((cell[:, 0] + cell[:, 1]) % 2 == 0).all() and board.abs().max() <= 2.0
    moons = make_data("moons", 4000, 0)
    assert moons.mean(0).abs().max() < 0.15  # centred
    for name in DATASETS:
        assert make_data(name, 10, 3).equal(make_data(name, 10, 3))
        assert make_data(name, 10, 3).shape == (10, 2)
    with pytest.raises(ValueError, match=r"data\.name"):
        make_data("spiral", 10, 0)


def test_mlp_accepts_shared_or_per_sample_time():
    net = ToyMLP(hidden=16, depth=2)
    x = torch.randn(5, 2)
    t = torch.full((5,), 0.3)
    assert net(x, t).shape == (5, 2)
    assert torch.allclose(net(x, torch.tensor(0.3)), net(x, t))
