"""PSNR / SSIM against scikit-image, per slice along each axis and for the volume."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from polydiff.medical.data.phantoms import shepp_logan_3d
from polydiff.medical.metrics import AXES, psnr, ssim, volume_metrics

SK_SSIM = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False}


@pytest.fixture(scope="module")
def pair():
    gt = shepp_logan_3d((14, 16, 18), seed=2).double()
    noisy = gt + 0.05 * torch.randn(
        gt.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    return noisy, gt


def test_psnr_closed_form():
    gt = torch.zeros(4, 4, 4)
    gt[0, 0, 0] = 2.0  # data range 2
    x = gt + 0.1
    assert float(psnr(x, gt)) == pytest.approx(10 * math.log10(4 / 0.01))


def test_volume_scores_match_skimage(pair):
    x, gt = pair
    L = float(gt.max() - gt.min())
    m = volume_metrics(x, gt)
    assert m.psnr == pytest.approx(peak_signal_noise_ratio(gt.numpy(), x.numpy(), data_range=L))
    sk = structural_similarity(gt.numpy(), x.numpy(), data_range=L, **SK_SSIM)
    assert m.ssim == pytest.approx(sk, abs=1e-10)


@pytest.mark.parametrize("axis_name", list(AXES))
def test_slice_scores_match_skimage(pair, axis_name):
    x, gt = pair
    L = float(gt.max() - gt.min())
    axis = AXES[axis_name]
    m = volume_metrics(x, gt)
    xs, gs = np.moveaxis(x.numpy(), axis, 0), np.moveaxis(gt.numpy(), axis, 0)
    sk_p = [peak_signal_noise_ratio(g, s, data_range=L) for s, g in zip(xs, gs)]
    sk_s = [structural_similarity(g, s, data_range=L, **SK_SSIM) for s, g in zip(xs, gs)]
    np.testing.assert_allclose(m.per_slice[axis_name]["psnr"], sk_p, rtol=1e-10)
    np.testing.assert_allclose(m.per_slice[axis_name]["ssim"], sk_s, atol=1e-10)
    assert m.psnr_axis[axis_name] == pytest.approx(np.mean(sk_p))
    assert m.ssim_axis[axis_name] == pytest.approx(np.mean(sk_s))
    assert set(m.as_dict()) >= {"psnr", "ssim", f"psnr_{axis_name}", f"ssim_{axis_name}"}


def test_perfect_reconstruction_and_ordering(pair):
    x, gt = pair
    assert float(ssim(gt, gt, n_dims=3)) == pytest.approx(1.0)
    better = gt + 0.5 * (x - gt)
    assert float(psnr(better, gt)) == pytest.approx(float(psnr(x, gt)) + 20 * math.log10(2))
    assert float(ssim(better, gt, n_dims=3)) > float(ssim(x, gt, n_dims=3))


def test_metric_errors(pair):
    x, gt = pair
    with pytest.raises(ValueError, match="shape"):
        volume_metrics(x[:-1], gt)
    with pytest.raises(ValueError, match="data_range"):
        psnr(x, torch.zeros_like(gt))
    with pytest.raises(ValueError, match=">= 11"):
        ssim(torch.zeros(8, 8), torch.ones(8, 8))
    with pytest.raises(ValueError, match="volume_metrics expects"):
        volume_metrics(x[0], gt[0])


def test_a_volume_smaller_than_the_ssim_window_gets_psnr_and_nan_ssim():
    """8 slices of 16 x 16: 3D SSIM and the slices with an 8-sample side have no 11-sample
    window (NaN, written as null in JSON); PSNR and axial SSIM are still scored."""
    import json
    import math

    from polydiff.medical.reconstruction import metrics_json

    gen = torch.Generator().manual_seed(0)
    gt = torch.rand(8, 16, 16, generator=gen)
    x = gt + 0.05 * torch.randn(8, 16, 16, generator=gen)
    m = volume_metrics(x, gt)
    assert math.isfinite(m.psnr) and math.isnan(m.ssim)
    finite = {a: math.isfinite(v) for a, v in m.ssim_axis.items()}
    assert finite == {a: x.movedim(ax, 0).shape[-1] >= 11 and x.movedim(ax, 0).shape[-2] >= 11
                      for a, ax in AXES.items()}  # fmt: skip
    assert json.loads(json.dumps(metrics_json(x, gt), allow_nan=False))["ssim"] is None
