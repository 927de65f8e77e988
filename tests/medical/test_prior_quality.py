"""The prior-quality measurement against closed forms.

With a Gaussian prior whose pixels are independent N(m, v), the exact Tweedie denoiser of
``x0 + s eps`` is the Wiener filter ``m + v / (v + s^2) (y - m)``, with expected squared error
``v s^2 / (v + s^2)`` per pixel; the TV oracle must return the best of its weights.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.restoration import denoise_tv_chambolle

from polydiff.core.paths import VPLinear
from polydiff.core.testing import GaussianMixture
from polydiff.medical.data import shepp_logan_3d
from polydiff.medical.metrics import psnr
from polydiff.medical.prior_quality import (
    nonempty_slices,
    prior_denoising_psnr,
    time_at_noise_level,
    tv_denoise_oracle,
)
from polydiff.medical.solvers import SlicePrior

PATH = VPLinear()
N, MEAN, VAR = 8, 0.5, 0.04  # 8x8 slices, pixels iid N(0.5, 0.2^2)


def gaussian_prior() -> tuple[SlicePrior, GaussianMixture]:
    gmm = GaussianMixture(torch.full((1, N * N), MEAN), VAR)
    f = gmm.model(PATH, "eps")
    return SlicePrior(lambda x, t: f(x.reshape(x.shape[0], -1), t).reshape(x.shape), PATH), gmm


@pytest.mark.parametrize("s", [0.02, 0.1, 0.4])
def test_time_at_noise_level_inverts_sigma_over_alpha(s):
    t = time_at_noise_level(PATH, s)
    assert float(PATH.sigma(t) / PATH.alpha(t)) == pytest.approx(s, rel=1e-9)
    with pytest.raises(ValueError, match="must be > 0"):
        time_at_noise_level(PATH, 0.0)


def test_gaussian_prior_gives_the_wiener_filter_and_its_closed_form_psnr():
    prior, gmm = gaussian_prior()
    clean = gmm.sample(512, generator=torch.Generator().manual_seed(3)).float().reshape(-1, N, N)
    levels = (0.05, 0.2)
    quality = prior_denoising_psnr(prior, clean, levels, tv_weights=(0.05,), seed=7, clip=None)
    assert quality.n_slices == 512 and prior.nfe == len(levels)
    eps = torch.randn(clean.shape, generator=torch.Generator().manual_seed(7))  # documented draw
    data_range = float(clean.max() - clean.min())
    for level, s in zip(quality.levels, levels, strict=True):
        noisy = clean + s * eps
        wiener = MEAN + VAR / (VAR + s**2) * (noisy - MEAN)
        # the same noise draw: exact up to float32 round-off
        assert level.prior_psnr == pytest.approx(float(psnr(wiener, clean)), abs=2e-3)
        assert level.noisy_psnr == pytest.approx(float(psnr(noisy, clean)), abs=2e-3)
        # and, over 32768 pixels, the closed-form expected MSE (a ~1% sampling error: 0.05 dB)
        expected = 10 * math.log10(data_range**2 / (VAR * s**2 / (VAR + s**2)))
        assert level.prior_psnr == pytest.approx(expected, abs=0.15)
        assert level.prior_psnr > level.noisy_psnr  # shrinkage by v / (v + s^2) < 1 helps


def test_prior_x0_is_the_exact_posterior_mean():
    prior, gmm = gaussian_prior()
    t = time_at_noise_level(PATH, 0.3)
    x_t = torch.randn(4, N, N, generator=torch.Generator().manual_seed(1))
    want = gmm.posterior_mean(x_t.reshape(4, -1).double(), t, PATH).reshape(4, N, N)
    torch.testing.assert_close(prior.x0(x_t, t).double(), want, atol=1e-5, rtol=1e-5)


def test_tv_oracle_returns_the_best_weight():
    clean = nonempty_slices(shepp_logan_3d(16, seed=900))[::3]
    noisy = clean + 0.1 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))
    weights = (0.005, 0.05, 0.2, 1.0)
    best, weight, scores = tv_denoise_oracle(noisy, clean, weights)
    slices = noisy.double().numpy()
    direct = [
        float(
            psnr(
                torch.from_numpy(np.stack([denoise_tv_chambolle(x, weight=w) for x in slices])),
                clean,
            )
        )
        for w in weights
    ]
    assert scores == pytest.approx(direct, abs=1e-9)
    assert best == max(direct) and weight == weights[direct.index(max(direct))]
    assert max(direct) > min(direct) + 1.0  # the choice matters
    # more noise, more smoothing: the oracle's weight does not shrink with the noise level
    quieter = clean + 0.01 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))
    assert tv_denoise_oracle(quieter, clean, weights)[1] <= weight
    with pytest.raises(ValueError, match="tv weights"):
        tv_denoise_oracle(noisy, clean, ())


def test_clip_and_bad_inputs():
    prior, gmm = gaussian_prior()
    clean = gmm.sample(64, generator=torch.Generator().manual_seed(0)).float().reshape(-1, N, N)
    clipped = prior_denoising_psnr(prior, clean.clamp(0, 1), (0.4,), (0.1,), clip=(0.0, 1.0))
    raw = prior_denoising_psnr(prior, clean.clamp(0, 1), (0.4,), (0.1,), clip=None)
    # clamping to the data's own range can only bring the estimate closer to it
    assert clipped.levels[0].prior_psnr >= raw.levels[0].prior_psnr
    assert clipped.to_dict()["levels"][0]["s"] == 0.4 and "| 0.4 |" in clipped.markdown()
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        prior_denoising_psnr(prior, clean[0])
    with pytest.raises(ValueError, match="no slice"):
        nonempty_slices(torch.zeros(4, 8, 8))
    vol = torch.zeros(4, 8, 8)
    vol[1, 2, 2] = 1.0
    assert nonempty_slices(vol).shape == (1, 8, 8)
    with pytest.raises(ValueError, match=r"noise_levels must be values > 0, got \[0.1, 0\]"):
        prior_denoising_psnr(prior, clean, (0.1, 0))
    with pytest.raises(ValueError, match=r"tv_weights must be values > 0, got \[\]"):
        prior_denoising_psnr(prior, clean, (0.1,), ())
    with pytest.raises(ValueError, match=r"clip must be \[low, high\] with low < high"):
        prior_denoising_psnr(prior, clean, (0.1,), clip=(1.0, 0.0))


def test_max_slices_picks_evenly_spaced_nonempty_slices():
    vol = torch.zeros(9, 4, 4)
    vol[1:8] = torch.arange(1, 8, dtype=torch.float32)[:, None, None]  # 7 non-empty slices
    picked = nonempty_slices(vol, max_slices=3)[:, 0, 0]
    assert picked.tolist() == [1.0, 4.0, 7.0]  # first, middle, last of the kept
    assert nonempty_slices(vol, max_slices=1)[:, 0, 0].tolist() == [4.0]
    assert nonempty_slices(vol, max_slices=20).shape[0] == 7
    with pytest.raises(ValueError, match="max_slices must be >= 1"):
        nonempty_slices(vol, max_slices=0)
