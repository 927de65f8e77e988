"""polydiff.core.metrics: the sliced Wasserstein distance."""

import math

import pytest
import torch

from polydiff.core.metrics import sliced_wasserstein


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
