"""Pieces of the core demo stage: toy data, the network, the sliced Wasserstein distance."""

from __future__ import annotations

import math

import pytest
import torch

from polydiff.apps.metrics import sliced_wasserstein
from polydiff.apps.toy2d import DATASETS, ToyMLP, make_data


def test_swd_of_a_translation_is_the_mean_squared_projected_shift():
    # Shifting a cloud by delta shifts every projection by <theta, delta>, so with the same
    # directions SW2^2 = mean_theta <theta, delta>^2 exactly; its expectation is |delta|^2 / d.
    x = torch.randn(300, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    delta = torch.tensor([0.3, -0.4], dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    theta = torch.randn(2, 4000, generator=g, dtype=torch.float64)
    theta = theta / theta.norm(dim=0)
    exact = (delta @ theta).pow(2).mean().sqrt()
    swd = sliced_wasserstein(x, x + delta, 4000, generator=torch.Generator().manual_seed(1))
    assert swd.item() == pytest.approx(exact.item(), rel=1e-10)
    assert swd.item() == pytest.approx(0.5 / math.sqrt(2), rel=0.03)


def test_swd_is_zero_for_permutations_and_symmetric():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(100, 3, generator=g), torch.randn(100, 3, generator=g) + 1
    perm = torch.randperm(100, generator=g)
    assert sliced_wasserstein(x, x[perm]).item() == pytest.approx(0.0, abs=1e-6)
    a = sliced_wasserstein(x, y, generator=torch.Generator().manual_seed(5))
    b = sliced_wasserstein(y, x, generator=torch.Generator().manual_seed(5))
    assert a.item() == pytest.approx(b.item(), rel=1e-6)
    with pytest.raises(ValueError, match="equal shapes"):
        sliced_wasserstein(x, y[:50])


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
