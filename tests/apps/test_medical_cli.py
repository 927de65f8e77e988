"""End-to-end runs of `polydiff medical simulate|train|reconstruct|evaluate` on tiny volumes.

The verbs run in-process through `polydiff.apps.cli.dispatch` (the same Hydra path as the console
script, without paying the torch/Lightning import per call); one test runs the console script.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from helpers import check_demo_report

from polydiff.apps.cli import dispatch
from polydiff.apps.registry import verbs
from polydiff.core.io import load_safetensors
from polydiff.medical.baselines import back_projection, cg_least_squares
from polydiff.medical.data import load_nifti, normalize, shepp_logan_3d
from polydiff.medical.metrics import volume_metrics
from polydiff.medical.operators import ParallelBeamCT, make_operator

SIZE = 16


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """`run(verb, *overrides, out="name")` -> (exit code, run folder) for `polydiff medical`."""
    monkeypatch.chdir(tmp_path)

    def call(name: str, *overrides: str, out: str = "out") -> tuple[int, Path]:
        code = dispatch(["medical", name, *overrides, f"hydra.run.dir={out}"])
        return code, tmp_path / out

    return call


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.fixture
def simulated(run) -> Path:
    code, folder = run("simulate", f"phantom.size={SIZE}", out="sim")
    assert code == 0
    return folder


def test_console_script_lists_the_verbs(polydiff):
    out = polydiff("medical", "--help")
    assert out.returncode == 0, out.stderr
    for name in ("simulate", "train", "reconstruct", "evaluate"):
        assert f"  {name} " in out.stdout and verbs("medical")[name].summary in out.stdout


def test_simulate_writes_the_exact_measurements_and_geometry(simulated: Path):
    gt = shepp_logan_3d(SIZE, seed=1000)
    saved = load_nifti(simulated / "ground_truth.nii.gz")
    assert torch.equal(saved.data, gt) and np.allclose(saved.affine, np.eye(4))
    y = load_safetensors(simulated / "measurements.safetensors")["y"]
    expected = ParallelBeamCT(SIZE, n_views=8).forward(gt)  # noise_std defaults to 0
    assert y.shape == expected.shape == (SIZE, 8, 23)
    torch.testing.assert_close(y, expected)
    geometry = _json(simulated / "geometry.json")
    assert geometry["operator"] == {"kind": "parallel", "n_views": 8}
    assert geometry["image_size"] == [SIZE, SIZE] and geometry["scale"] == {"low": 0, "high": 1}


def test_reconstruct_from_measurements_classical(run, simulated: Path):
    gt = load_nifti(simulated / "ground_truth.nii.gz").data
    psnr = {}
    for method in ("back_projection", "adjoint", "fbp", "tv_admm"):
        code, out = run("reconstruct", f"measurements={simulated}", f"method={method}", out=method)
        assert code == 0
        rec = load_nifti(out / "reconstruction.nii.gz").data
        metrics = _json(out / "metrics.json")
        direct = volume_metrics(rec, gt).as_dict()
        assert metrics == pytest.approx(direct, rel=1e-6)
        assert _json(out / "reconstruction.json")["nfe"] == 0
        psnr[method] = metrics["psnr"]
    y = load_safetensors(simulated / "measurements.safetensors")["y"]
    bp = back_projection(ParallelBeamCT(SIZE, n_views=8), y)
    bp_file = load_nifti(Path("back_projection") / "reconstruction.nii.gz").data
    torch.testing.assert_close(bp_file, bp, atol=1e-5, rtol=1e-5)
    assert psnr["tv_admm"] > psnr["back_projection"] + 10  # 35 vs 17 dB measured


def test_reconstruct_nifti_keeps_affine_and_intensity_units(run, tmp_path: Path):
    # An oblique-free but anisotropic, shifted affine and HU-like intensities.
    vol = shepp_logan_3d(SIZE, seed=3) * 1000 - 500
    affine = np.diag([0.8, 0.9, 2.5, 1.0])
    affine[:3, 3] = [-10, 20, 5]
    nib.save(nib.Nifti1Image(vol.permute(2, 1, 0).numpy(), affine), tmp_path / "head.nii.gz")
    overrides = ("input=head.nii.gz", "operator.kind=mri", "method=cg", "cg.n_iter=10")
    code, out = run("reconstruct", *overrides)
    assert code == 0
    rec = load_nifti(out / "reconstruction.nii.gz")
    assert np.allclose(rec.affine, affine) and rec.spacing == pytest.approx((2.5, 0.9, 0.8))
    x01, scale = normalize(vol, "minmax")
    op = make_operator("mri", SIZE, mask="uniform1d", acceleration=4, seed=0)
    expected = scale.inverse(cg_least_squares(op, op.forward(x01), None, 10))
    torch.testing.assert_close(rec.data, expected, atol=1e-2, rtol=1e-4)  # HU units
    assert _json(out / "metrics.json")["psnr"] == pytest.approx(
        volume_metrics(rec.data, vol).psnr, rel=1e-5
    )


def test_a_volume_of_any_size_meets_the_anatomy_prior(run, tmp_path: Path):
    """`fit=auto` (the default) resamples a 20x12 in-plane volume to the anatomy prior's 64x64
    slices for a diffusion method; the output's affine is the resampled grid's, so every voxel
    keeps its world position (checked against geometry.resample)."""
    from polydiff.medical.data.geometry import resample
    from polydiff.medical.prior import REAL_PRIOR, shipped_prior_dir

    vol = shepp_logan_3d((12, 12, 20), seed=3) * 100
    affine = np.diag([1.2, 1.5, 4.0, 1.0])
    affine[:3, 3] = [-12, 9, 30]
    nib.save(nib.Nifti1Image(vol.permute(2, 1, 0).numpy(), affine), tmp_path / "small.nii.gz")
    code, out = run("reconstruct", "input=small.nii.gz", "method=dds", "dds.steps=2",
                    "tv_admm.n_iter=2")  # fmt: skip
    assert code == 0
    rec = load_nifti(out / "reconstruction.nii.gz")
    assert rec.data.shape == (12, 64, 64)
    want = resample(load_nifti(tmp_path / "small.nii.gz"), (None, 64, 64))
    np.testing.assert_allclose(rec.affine, want.affine, atol=1e-5)
    np.testing.assert_allclose(rec.spacing, (4.0, 1.5 * 12 / 64, 1.2 * 20 / 64), rtol=1e-5)
    info = _json(out / "reconstruction.json")
    assert info["prior"] == str(shipped_prior_dir(REAL_PRIOR)) and info["nfe"] == 2
    # a volume from a file takes the real-anatomy picks: DDS warm-started from TV-ADMM
    assert info["validated_on"] == "real anatomy"
    assert {k: info["params"][k] for k in ("start", "t_start", "n_cg")} == {
        "start": "tv_admm", "t_start": 0.2, "n_cg": 20}  # fmt: skip
    assert _json(out / "metrics.json")["psnr"] > 10  # against the resampled input
    # crop / pad to an explicit shape, classical method: a shift of the affine only
    code, out = run("reconstruct", "input=small.nii.gz", "method=cg", "cg.n_iter=2",
                    "fit=crop_pad", "fit_shape=[14,16,24]", out="crop")  # fmt: skip
    assert code == 0
    rec = load_nifti(out / "reconstruction.nii.gz")
    assert rec.data.shape == (14, 16, 24)
    shifted = affine.copy()
    shifted[:3, 3] += affine[:3, :3] @ np.array([-2, -2, -1])  # (i, j, k) of the new voxel 0
    np.testing.assert_allclose(rec.affine, shifted, atol=1e-5)


def test_train_then_every_diffusion_solver(run):
    code, out = run(
        "train",
        f"prior.image_size={SIZE}",
        "prior.n_volumes=1",
        "train.steps=2",
        "train.batch_size=4",
        "train.warmup=1",
        "trainer.accelerator=cpu",
        out="prior",
    )
    assert code == 0
    model = out / "model"
    assert (model / "model.safetensors").is_file()
    saved = _json(model / "config.json")
    assert saved["method"] == "slice_prior" and saved["config"]["image_size"] == SIZE
    assert (out / "train" / "checkpoints" / "last.ckpt").is_file()
    # seeded training repeats on CPU: the same command gives the same weights
    code, again = run("train", f"prior.image_size={SIZE}", "prior.n_volumes=1", "train.steps=2",
                      "train.batch_size=4", "train.warmup=1", "trainer.accelerator=cpu",
                      out="prior_again")  # fmt: skip
    assert code == 0
    first = load_safetensors(model / "model.safetensors")
    second = load_safetensors(again / "model" / "model.safetensors")
    assert all(torch.equal(first[k], second[k]) for k in first)
    steps = {"dds": 3, "dps": 2, "red_diff": 2, "diffusion_mbir": 2}
    expected_nfe = {"dds": 3, "dps": 2, "red_diff": 2, "diffusion_mbir": 4}
    for method, n in steps.items():
        overrides = [f"phantom.size={SIZE}", f"prior={model}", f"method={method}"]
        overrides += [f"{method}.steps={n}"]
        if method == "diffusion_mbir":
            overrides.append("diffusion_mbir.corrector_steps=1")
        code, rec = run("reconstruct", *overrides, out=method)
        assert code == 0, method
        assert _json(rec / "reconstruction.json")["nfe"] == expected_nfe[method]
        volume = load_nifti(rec / "reconstruction.nii.gz").data
        assert volume.shape == (SIZE,) * 3 and torch.isfinite(volume).all()
    # a prior trained on 16^2 slices cannot reconstruct 24^2 slices
    code, _ = run("reconstruct", "phantom.size=24", f"prior={model}", "method=dds", out="bad")
    assert code == 2


def test_evaluate_matches_the_metrics_module(run, simulated: Path):
    code, rec = run("reconstruct", f"measurements={simulated}", "method=cg", out="rec")
    assert code == 0
    args = (
        f"reconstruction={rec}/reconstruction.nii.gz",
        f"ground_truth={simulated}/ground_truth.nii.gz",
    )
    code, out = run("evaluate", *args, "per_slice=true")
    assert code == 0
    metrics = _json(out / "metrics.json")
    direct = volume_metrics(
        load_nifti(rec / "reconstruction.nii.gz").data,
        load_nifti(simulated / "ground_truth.nii.gz").data,
    )
    for key, value in direct.as_dict().items():
        assert metrics[key] == pytest.approx(value, rel=1e-9), key
    assert set(metrics["per_slice"]) == {"axial", "coronal", "sagittal"}
    assert len(metrics["per_slice"]["axial"]["psnr"]) == SIZE


def test_bad_inputs_exit_2_with_one_line(run, simulated: Path, tmp_path: Path, capsys):
    nib.save(nib.Nifti1Image(np.zeros((8, 8), np.float32), np.eye(4)), tmp_path / "flat.nii")
    nan = np.full((8, 8, 8), np.nan, np.float32)
    nib.save(nib.Nifti1Image(nan, np.eye(4)), tmp_path / "nan.nii")
    # measurements that do not fit their geometry
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "geometry.json").write_bytes((simulated / "geometry.json").read_bytes())
    geometry = _json(broken / "geometry.json")
    geometry["operator"]["n_views"] = 6
    (broken / "geometry.json").write_text(json.dumps(geometry))
    (broken / "measurements.safetensors").write_bytes(
        (simulated / "measurements.safetensors").read_bytes()
    )
    cases = [
        (("simulate", "input=flat.nii"), "expected a 3D volume"),
        (("simulate", "operator.kind=cone"), "operator.kind='cone'"),
        (("train", "prior.unet=huge"), "huge"),
        (("train", "prior.image_size=4"), "prior.image_size=4: must be >= 8"),
        (("train", "prior.n_volumes=0"), "prior.n_volumes=0"),
        (("train", "train.ema=1.5", "prior.n_volumes=1"), "train.ema must be < 1"),
        (("train", "train.lr=-1", "prior.n_volumes=1", "train.steps=1"), "lr must be positive"),
        (("train", "train.lr=abc", "prior.n_volumes=1"), "lr must be a number, got 'abc'"),
        (("reconstruct", "method=magic"), "method='magic'"),
        (("reconstruct", "method=dds", "prior=no_prior"), "prior=no_prior: no such file"),
        (("reconstruct", "method=dds", "phantom.size=16"), "no shipped prior for 16x16 slices"),
        (("reconstruct", "measurements=broken"), "do not fit the parallel operator"),
        (("reconstruct", "input=nan.nii"), "NaN"),
        (("evaluate", "reconstruction=missing.nii.gz", "ground_truth=nan.nii"), "missing.nii.gz"),
        (
            (
                "evaluate",
                f"reconstruction={simulated}/ground_truth.nii.gz",
                "ground_truth=flat.nii",
            ),
            "flat.nii",
        ),
    ]
    for i, (args, needle) in enumerate(cases):
        capsys.readouterr()
        code, _ = run(*args, out=f"bad{i}")
        err = capsys.readouterr().err.strip()
        assert code == 2, args
        assert needle in err and len(err.splitlines()) == 1, (args, err)


def test_evaluate_rejects_mismatched_shapes(run, simulated: Path, tmp_path: Path, capsys):
    nib.save(nib.Nifti1Image(np.ones((8, 8, 8), np.float32), np.eye(4)), tmp_path / "small.nii")
    code, _ = run(
        "evaluate", "reconstruction=small.nii", f"ground_truth={simulated}/ground_truth.nii.gz"
    )
    assert code == 2 and "!= ground_truth shape (16, 16, 16)" in capsys.readouterr().err


def test_mri_kspace_round_trips_through_the_measurement_folder(run):
    overrides = (f"phantom.size={SIZE}", "operator.kind=mri", "operator.mask=gaussian1d")
    code, sim = run("simulate", *overrides, "noise_std=0.01", "seed=5", out="sim")
    assert code == 0
    op = make_operator("mri", SIZE, mask="gaussian1d", acceleration=4, seed=0)
    gt = shepp_logan_3d(SIZE, seed=1000)
    expected = op.measure(gt, noise_std=0.01, generator=torch.Generator().manual_seed(5))
    stored = load_safetensors(sim / "measurements.safetensors")["y"]
    torch.testing.assert_close(torch.view_as_complex(stored), expected)
    code, rec = run("reconstruct", f"measurements={sim}", "method=cg", "cg.n_iter=5", out="rec")
    assert code == 0
    volume = load_nifti(rec / "reconstruction.nii.gz").data
    torch.testing.assert_close(volume, cg_least_squares(op, expected, None, 5))


@pytest.mark.parametrize(
    ("kind", "tv_lam", "zeta"),
    [("parallel", 1e-4, 2.0), ("limited_angle", 2.5e-5, 2.0), ("mri", 1.6e-3, 8.0)],
)
def test_null_parameters_take_the_values_validated_for_the_modality(run, kind, tv_lam, zeta):
    base = (f"phantom.size={SIZE}", f"operator.kind={kind}", "operator.n_views=4")
    code, out = run("reconstruct", *base, "method=tv_admm", "tv_admm.n_iter=2", out="tv")
    assert code == 0
    assert _json(out / "reconstruction.json")["params"]["lam"] == tv_lam
    code, out = run("reconstruct", *base, "method=tv_admm", "tv_admm.lam=0.01", out="tv2")
    assert code == 0 and _json(out / "reconstruction.json")["params"]["lam"] == 0.01  # explicit
    # DPS would need a 16^2 prior: check the library's filling of its null zeta on a tiny one
    from polydiff.medical.prior import PriorConfig, SlicePriorMethod
    from polydiff.medical.reconstruction import reconstruct

    op = make_operator(kind, SIZE, **({} if kind == "mri" else {"n_views": 4}))
    tiny = {"channels": 8, "channel_mult": (1, 2), "groups": 4}
    prior = SlicePriorMethod(PriorConfig(image_size=SIZE, unet_overrides=tiny)).slice_prior()
    y = op.forward(shepp_logan_3d(SIZE, seed=1))
    rec = reconstruct("dps", prior, op, y, zeta=None, steps=1)
    assert rec.options == {"zeta": zeta, "steps": 1} and rec.nfe == 1
    filled = reconstruct("dds", prior, op, y, steps=1, persistent_split=None, gamma=None).options
    want = {"steps": 1, "persistent_split": kind != "mri", "gamma": None}  # hard data
    assert filled == {**want, "n_cg": 5, "start": None, "t_start": 1.0}  # a phantom: from noise


def test_default_dds_beats_the_default_tv_admm(run):
    """The defaults are chosen from measurements: on the default 8-view phantom DDS with its
    default steps (50) is better than TV-ADMM (with 10 steps it was 5 dB worse)."""
    scores = {}
    for method in ("tv_admm", "dds"):
        code, out = run("reconstruct", f"method={method}", out=method)
        assert code == 0
        scores[method] = _json(out / "metrics.json")["psnr"]
    assert _json(out / "reconstruction.json")["nfe"] == 50
    assert scores["dds"] > scores["tv_admm"] + 0.5


@pytest.mark.parametrize("size", [32, 64])
def test_reconstruct_uses_the_shipped_prior_by_default(run, size):
    # prior=null: the shipped prior for the volume's slice size (phantom-32 or phantom-64)
    overrides = ("method=dds", "dds.steps=2", f"phantom.size={size}")
    code, out = run("reconstruct", *overrides)
    assert code == 0
    info = _json(out / "reconstruction.json")
    assert info["nfe"] == 2
    volume = load_nifti(out / "reconstruction.nii.gz").data
    assert volume.shape == (size, size, size) and torch.isfinite(volume).all()


def test_quick_demo_stage_end_to_end(polydiff, tmp_path: Path):
    """`polydiff demo domains=[medical] quick=true`: one report row, the montage, the metrics."""
    out = polydiff("demo", "domains=[medical]", "quick=true")
    assert out.returncode == 0, out.stderr[-3000:]
    (run,) = (tmp_path / "runs" / "demo").iterdir()
    check_demo_report(run, "medical", ["medical/montage.png"])
    metrics = _json(run / "medical" / "metrics.json")["methods"]
    assert list(metrics) == ["fbp", "tv_admm", "dds"]
    assert metrics["dds"]["nfe"] == 5 and metrics["fbp"]["nfe"] == 0
    # 8 views of the held-out phantom: TV-ADMM and DDS both beat FBP's streaks
    assert metrics["tv_admm"]["psnr"] > metrics["fbp"]["psnr"] + 3
    assert metrics["dds"]["psnr"] > metrics["fbp"]["psnr"]
    gt = shepp_logan_3d(32, seed=1000)
    tv = load_nifti(run / "medical" / "tv_admm.nii.gz").data
    assert metrics["tv_admm"]["psnr"] == pytest.approx(volume_metrics(tv, gt).psnr, abs=1e-3)


def test_reconstruction_json_records_the_options_the_solver_ran_with(run, monkeypatch):
    """reconstruction.json's params are the options passed to the solver (nulls filled for
    MRI), not a second computation of them."""
    from dataclasses import replace

    from polydiff.medical import baselines, reconstruction
    from polydiff.medical.solvers import operator_norm2

    seen: dict[str, dict] = {}

    def recorder(name, fn):
        def wrapped(*args, **kwargs):
            seen[name] = kwargs
            return fn(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(baselines, "tv_admm", recorder("tv_admm", baselines.tv_admm))
    dds = reconstruction.reconstruction_method("dds")
    patched = replace(dds, run=recorder("dds", dds.run))
    monkeypatch.setitem(reconstruction._RECONSTRUCTIONS, "dds", patched)
    base = ("phantom.size=32", "operator.kind=mri")
    code, out = run("reconstruct", *base, "method=tv_admm", "tv_admm.n_iter=2", out="tv")
    assert code == 0
    params = _json(out / "reconstruction.json")["params"]
    norm2 = operator_norm2(make_operator("mri", 32, mask="uniform1d", acceleration=4, seed=0))
    assert params["lam"] == 1.6e-3 and params["n_iter"] == 2  # the MRI pick, relative units
    assert seen["tv_admm"] == {**params, "lam": params["lam"] * norm2, "rho": params["rho"] * norm2}
    code, out = run("reconstruct", *base, "method=dds", "dds.steps=1", out="dds")
    assert code == 0
    params = _json(out / "reconstruction.json")["params"]
    assert params["persistent_split"] is False and params["steps"] == 1  # restarted on MRI
    assert params["start"] is None and params["n_cg"] == 5  # a phantom: from noise
    assert _json(out / "reconstruction.json")["validated_on"] == "phantoms"
    assert {**seen["dds"], "clip": list(seen["dds"]["clip"])} == params
    # a warm start from TV-ADMM with its own section's options (tv_admm.n_iter=2)
    code, out = run("reconstruct", *base, "method=dds", "dds.steps=1", "dds.start=tv_admm",
                    "dds.t_start=0.2", "tv_admm.n_iter=2", out="warm")  # fmt: skip
    assert code == 0
    params = _json(out / "reconstruction.json")["params"]
    assert params["start"] == "tv_admm" and params["t_start"] == 0.2
    assert seen["tv_admm"]["n_iter"] == 2 and seen["dds"]["t_start"] == 0.2


def test_prior_quality_of_the_shipped_prior(run, capsys):
    from polydiff.medical.prior import load_prior, shipped_prior_dir
    from polydiff.medical.prior_quality import nonempty_slices, prior_denoising_psnr

    options = ("noise_levels=[0.1,0.4]", "tv_weights=[0.05,0.2]", "max_slices=3")
    code, out = run("prior-quality", *options)
    assert code == 0
    metrics = _json(out / "metrics.json")
    assert metrics["prior"] == "shipped phantom-32" and metrics["n_slices"] == 3
    # the same numbers from the library on the validation phantom's 3 evenly spaced slices
    kept = nonempty_slices(shepp_logan_3d(32, seed=900).float())
    slices = kept[[0, round((len(kept) - 1) / 2), len(kept) - 1]]
    direct = prior_denoising_psnr(load_prior(shipped_prior_dir()), slices, (0.1, 0.4), (0.05, 0.2))
    for got, want in zip(metrics["levels"], direct.to_dict()["levels"], strict=True):
        assert got == pytest.approx(want, abs=1e-6)
    for level in metrics["levels"]:  # the shipped prior denoises better than oracle TV
        assert level["prior_psnr"] > level["tv_psnr"] > level["noisy_psnr"]
    assert "| 0.4 |" in (out / "quality.md").read_text()
    for args, needle in [
        (("noise_levels=[0.1,0]",), "noise_levels must be values > 0"),
        (("phantom.size=16",), "no shipped prior for 16x16 slices"),
        (("clip=[1,0]",), "clip must be [low, high]"),
    ]:
        capsys.readouterr()
        code, _ = run("prior-quality", *args, out="bad")
        err = capsys.readouterr().err.strip()
        assert code == 2 and needle in err and len(err.splitlines()) == 1, (args, err)
