"""polydiff.core.metrics: sliced Wasserstein, Frechet distance / FID, bootstrap and Wilson
intervals, against closed forms."""

import math

import pytest
import torch

from polydiff.core.errors import InputError
from polydiff.core.metrics import (
    bootstrap_mean,
    fid,
    fid_bootstrap,
    frechet_distance,
    sliced_wasserstein,
    wilson_interval,
)


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


def random_rotation(dim, generator):
    q, r = torch.linalg.qr(torch.randn(dim, dim, generator=generator, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))


def test_frechet_distance_of_gaussians_matches_closed_forms():
    g = torch.Generator().manual_seed(0)
    mean_a, mean_b = (torch.randn(5, generator=g, dtype=torch.float64) for _ in range(2))
    var_a, var_b = (torch.rand(5, generator=g, dtype=torch.float64) + 0.1 for _ in range(2))
    # diagonal covariances: |mu_a - mu_b|^2 + sum (sqrt(a_i) - sqrt(b_i))^2
    exact = (mean_a - mean_b).square().sum() + (var_a.sqrt() - var_b.sqrt()).square().sum()
    found = frechet_distance(mean_a, torch.diag(var_a), mean_b, torch.diag(var_b))
    assert found == pytest.approx(float(exact), rel=1e-10)
    # rotating both Gaussians (non-diagonal, commuting covariances) changes nothing
    q = random_rotation(5, g)
    cov_a, cov_b = q @ torch.diag(var_a) @ q.T, q @ torch.diag(var_b) @ q.T
    assert frechet_distance(q @ mean_a, cov_a, q @ mean_b, cov_b) == (
        pytest.approx(float(exact), rel=1e-9)
    )
    # non-commuting covariances: tr of (S_a^1/2 S_b S_a^1/2)^1/2 is symmetric in a and b and
    # equals tr((S_a S_b)^1/2), whose eigenvalues are the square roots of those of S_a S_b
    m = torch.randn(5, 5, generator=g, dtype=torch.float64)
    n = torch.randn(5, 5, generator=g, dtype=torch.float64)
    cov_a, cov_b = m @ m.T + 0.1 * torch.eye(5), n @ n.T + 0.1 * torch.eye(5)
    cross = torch.linalg.eigvals(cov_a @ cov_b).real.clamp_min(0).sqrt().sum()
    expected = float(cov_a.trace() + cov_b.trace() - 2 * cross)
    zero = torch.zeros(5, dtype=torch.float64)
    assert frechet_distance(zero, cov_a, zero, cov_b) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(zero, cov_b, zero, cov_a) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(mean_a, cov_a, mean_a, cov_a) == pytest.approx(0.0, abs=1e-9)


def test_fid_of_samples_estimates_the_gaussians_distance():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(20000, 3, generator=g, dtype=torch.float64)
    b = 2.0 * torch.randn(20000, 3, generator=g, dtype=torch.float64) + 1.0
    # N(0, I) vs N(1, 4 I): 3 * 1 + 3 * (1 - 2)^2 = 6
    assert fid(a, b) == pytest.approx(6.0, rel=0.03)
    assert fid(a, a) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(InputError, match="features: FID needs at least 2"):
        fid(torch.zeros(1, 3), torch.zeros(4, 3))
    with pytest.raises(InputError, match="reference: FID needs"):
        fid(torch.zeros(4, 3), torch.zeros(4))


def test_fid_bootstrap_draws_cover_the_true_distance_and_pair_the_sets():
    g = torch.Generator().manual_seed(2)
    reference = torch.randn(3000, 2, generator=g, dtype=torch.float64)
    near = torch.randn(3000, 2, generator=g, dtype=torch.float64) + 0.5
    far = torch.randn(3000, 2, generator=g, dtype=torch.float64) + 1.0
    draws = fid_bootstrap({"near": near, "far": far, "twin": near}, reference, resamples=200)
    # N(0, I) vs N(0.5 or 1, I): the Frechet distance is the squared mean shift, 2 x 0.25 or 2
    for name, truth in (("near", 0.5), ("far", 2.0)):
        lo, hi = torch.quantile(draws[name], torch.tensor([0.005, 0.995], dtype=torch.float64))
        assert draws[name].shape == (200,) and lo < truth < hi
    # one row index vector for every set: identical sets give identical draws (difference 0)
    assert torch.equal(draws["near"], draws["twin"])
    assert (draws["far"] > draws["near"]).all()
    assert fid_bootstrap({"a": near}, reference, resamples=5, seed=3)["a"].equal(
        fid_bootstrap({"a": near}, reference, resamples=5, seed=3)["a"]
    )
    with pytest.raises(InputError, match="sets: paired FID needs equal numbers"):
        fid_bootstrap({"a": near, "b": far[:10]}, reference)
    with pytest.raises(InputError, match=r"strata: one label per row \(3000\)"):
        fid_bootstrap({"a": near}, reference, strata=torch.zeros(5))


def test_fid_bootstrap_within_strata_keeps_the_design_and_can_fix_the_reference():
    # rows constant within each label: resampling within labels changes nothing, so with a
    # fixed reference every draw is the full set's FID; across labels the draws vary
    g = torch.Generator().manual_seed(4)
    centres = torch.randn(3, 2, generator=g, dtype=torch.float64) * 5
    labels = torch.arange(300) % 3
    clusters = centres[labels]
    reference = torch.randn(500, 2, generator=g, dtype=torch.float64)
    fixed = {"resample_reference": False, "resamples": 20}
    within = fid_bootstrap({"a": clusters}, reference, strata=labels, **fixed)["a"]
    assert torch.allclose(
        within, torch.full((20,), fid(clusters, reference), dtype=torch.float64), rtol=1e-9
    )
    across = fid_bootstrap({"a": clusters}, reference, **fixed)["a"]
    assert across.std() > 0.01 * across.mean()


def test_bootstrap_interval_of_a_mean_matches_the_normal_approximation():
    mean, lo, hi = bootstrap_mean(torch.full((10,), 2.0))
    assert mean == lo == hi == 2.0
    values = torch.randn(400, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    mean, lo, hi = bootstrap_mean(values)
    half_width = 1.96 * float(values.std()) / math.sqrt(400)  # the normal approximation
    assert lo < mean < hi and abs((hi - lo) / 2 - half_width) < 0.15 * half_width
    with pytest.raises(InputError, match=r"^values: a confidence interval needs 2"):
        bootstrap_mean(torch.ones(1))


def test_wilson_interval_against_known_values():
    low, high = wilson_interval(8, 8)
    assert low == pytest.approx(0.6756, abs=1e-4) and high == 1.0
    low, high = wilson_interval(5, 10)
    assert low == pytest.approx(0.2366, abs=1e-4) and high == pytest.approx(0.7634, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)  # no trials: nothing known
    low, high = wilson_interval(0, 20)  # 0 of n starts at 0 with a positive upper end
    assert low == 0.0 and 0.1 < high < 0.2
    for k, n in [(3, 40), (30, 400), (300, 4000)]:  # holds the estimate, narrows with n
        low, high = wilson_interval(k, n)
        assert low < k / n < high
    assert wilson_interval(30, 400)[1] - wilson_interval(30, 400)[0] < 0.07
