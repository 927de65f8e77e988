"""Simulated measurements: the noise model, the saved folder's round trip and its errors."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from polydiff.medical.data import shepp_logan_3d
from polydiff.medical.measurements import (
    OperatorConfig,
    PhantomConfig,
    ground_truth,
    load_measurements,
    measure,
    save_measurements,
    simulate,
)
from polydiff.medical.operators import make_operator

SIZE = 16


def test_noise_model_is_seeded_white_noise_on_the_measurements():
    x = shepp_logan_3d(SIZE, seed=2)
    op = make_operator("parallel", SIZE, n_views=4)
    y, std = measure(op, x, 0.1, seed=7)
    noise = torch.randn(op.forward(x).shape, generator=torch.Generator().manual_seed(7))
    assert std == 0.1
    torch.testing.assert_close(y, op.forward(x) + 0.1 * noise, rtol=0, atol=0)
    clean, zero = measure(op, x, 0.0)
    assert zero == 0.0 and torch.equal(clean, op.forward(x))
    with pytest.raises(ValueError, match="noise_std must be >= 0"):
        measure(op, x, -1.0)


def test_relative_noise_scales_with_the_sampled_kspace():
    x = shepp_logan_3d(SIZE, seed=2)
    op = make_operator("mri", SIZE, mask="uniform1d", acceleration=4, seed=0)
    clean = op.forward(x)
    y, std = measure(op, x, 0.02, relative=True, seed=1)
    sampled = clean[clean.abs() > 0]  # unsampled k-space lines are zero and not counted
    assert std == pytest.approx(0.02 * float(sampled.abs().square().mean().sqrt()), rel=1e-12)
    assert sampled.numel() < clean.numel()
    residual = (y - clean)[clean.abs() > 0].abs().square().mean().sqrt()
    assert float(residual) == pytest.approx(std, rel=0.1)  # E|n|^2 = 1 on the sampled lines


@pytest.mark.parametrize("kind", ["parallel", "mri"])
def test_simulated_measurements_round_trip_through_their_folder(tmp_path, kind):
    truth = ground_truth(phantom_config=PhantomConfig(size=SIZE, seed=5))
    meas = simulate(truth, OperatorConfig(kind, n_views=6), noise_std=0.01, seed=3)
    expected = meas.op.measure(
        shepp_logan_3d(SIZE, seed=5), 0.01, generator=torch.Generator().manual_seed(3)
    )
    torch.testing.assert_close(meas.y, expected, rtol=0, atol=0)
    save_measurements(tmp_path / "m", meas)
    back = load_measurements(tmp_path / "m")
    assert torch.equal(back.y, meas.y) and back.y.is_complex() == (kind == "mri")
    assert back.geometry == json.loads(json.dumps(meas.geometry))
    assert type(back.op) is type(meas.op) and back.image_size == (SIZE, SIZE)
    assert torch.equal(back.truth.data, truth.volume.data)
    torch.testing.assert_close(back.op.forward(truth.x01), meas.op.forward(truth.x01))


def test_a_nifti_is_measured_in_01_and_reconstructed_in_its_units(tmp_path):
    vol = shepp_logan_3d(SIZE, seed=3) * 1000 - 500
    affine = np.diag([0.8, 0.9, 2.5, 1.0])
    nib.save(nib.Nifti1Image(vol.permute(2, 1, 0).numpy(), affine), tmp_path / "head.nii.gz")
    truth = ground_truth(tmp_path / "head.nii.gz")
    assert float(truth.x01.min()) == 0 and float(truth.x01.max()) == 1
    meas = simulate(truth, OperatorConfig("parallel"))
    assert meas.geometry["scale"] == {"low": -500.0, "high": 500.0}
    back = meas.to_volume(truth.x01)
    torch.testing.assert_close(back.data, vol, atol=1e-3, rtol=0)
    assert np.allclose(back.affine, affine)
    with pytest.raises(ValueError, match="intensity='log'"):
        ground_truth(tmp_path / "head.nii.gz", intensity="log")


def test_bad_configs_and_folders_are_one_error_naming_them(tmp_path):
    with pytest.raises(ValueError, match=r"operator\.kind='cone'"):
        OperatorConfig("cone")
    with pytest.raises(ValueError, match=r"operator\.n_views must be >= 1"):
        OperatorConfig("parallel", n_views=0)
    with pytest.raises(ValueError, match=r"phantom\.kind='noise'"):
        PhantomConfig(kind="noise")
    with pytest.raises(ValueError, match=r"missing geometry\.json"):
        load_measurements(tmp_path)
    meas = simulate(ground_truth(phantom_config=PhantomConfig(size=SIZE)), OperatorConfig())
    save_measurements(tmp_path / "m", meas)
    geometry = json.loads((tmp_path / "m" / "geometry.json").read_text())
    geometry["operator"]["n_views"] = 6
    (tmp_path / "m" / "geometry.json").write_text(json.dumps(geometry))
    with pytest.raises(ValueError, match=r"\(16, 8, 23\) do not fit the parallel operator"):
        load_measurements(tmp_path / "m")
