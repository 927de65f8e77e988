"""Bad input to `polydiff medical ...`: one line naming the file or option, exit 2, nothing
half-written (issue 14); and a damaged last.ckpt that training survives. In-process, tiny sizes."""

from __future__ import annotations

import gzip
import json
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from polydiff.apps.cli import console

SIZE = 16


def _nifti(path: Path, data: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(data.astype(np.float32), np.eye(4)), path)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Simulated measurements, a NIfTI volume and damaged copies of both, a FIFO, a file."""
    root = tmp_path_factory.mktemp("medical_bad")
    sim = root / "sim"
    assert console(["medical", "simulate", f"phantom.size={SIZE}", f"hydra.run.dir={sim}"]) == 0
    volume = sim / "ground_truth.nii.gz"
    data = np.asarray(nib.load(volume).dataobj, np.float32)
    raw = gzip.decompress(volume.read_bytes())
    (root / "truncated.nii.gz").write_bytes(gzip.compress(raw)[: len(gzip.compress(raw)) // 2])
    (root / "truncated.nii").write_bytes(raw[: len(raw) // 2])
    (root / "empty.nii.gz").write_bytes(b"")
    (root / "text.nii").write_text("not a NIfTI volume\n")
    _nifti(root / "nan.nii", np.where(data > 0.5, np.nan, data))
    _nifti(root / "inf.nii", np.where(data > 0.5, np.inf, data))
    _nifti(root / "zeros.nii", np.zeros_like(data))
    _nifti(root / "tiny.nii", np.arange(64.0).reshape(4, 4, 4))
    _nifti(root / "flat.nii", data[0])
    os.mkfifo(root / "fifo.nii")
    (root / "folder.nii").mkdir()
    (root / "file").write_text("a regular file")
    cut = root / "cut_measurements"
    shutil.copytree(sim, cut, ignore=shutil.ignore_patterns(".hydra", "*.log"))
    (cut / "measurements.safetensors").write_bytes(
        (sim / "measurements.safetensors").read_bytes()[:100]
    )
    nogeo = root / "bad_geometry"
    shutil.copytree(sim, nogeo, ignore=shutil.ignore_patterns(".hydra", "*.log"))
    (nogeo / "geometry.json").write_text("{not json")
    from polydiff.medical.prior import prior_folder

    shipped = prior_folder((32, 32), None)
    bad_prior = root / "bad_prior"
    shutil.copytree(shipped, bad_prior)
    (bad_prior / "model.safetensors").write_text("not weights")
    return {"root": root, "sim": sim, "volume": volume, "cut": cut, "nogeo": nogeo,
            "bad_prior": bad_prior}  # fmt: skip


R, S, EV = "reconstruct", "simulate", "evaluate"
CASES = [
    # damaged or unusable volumes
    ("missing-nifti", S, ("input={root}/missing.nii.gz",), ("input", "missing.nii.gz")),
    ("empty-nifti", S, ("input={root}/empty.nii.gz",), ("empty.nii.gz",)),
    ("truncated-nii-gz", S, ("input={root}/truncated.nii.gz",), ("truncated.nii.gz",)),
    ("truncated-nii", S, ("input={root}/truncated.nii",), ("truncated.nii",)),
    ("text-renamed-nii", S, ("input={root}/text.nii",), ("text.nii", "not a readable NIfTI")),
    ("nan-nifti", S, ("input={root}/nan.nii",), ("nan.nii", "NaN")),
    ("inf-nifti", R, ("input={root}/inf.nii",), ("inf.nii", "infinite")),
    ("all-zero-nifti", S, ("input={root}/zeros.nii",), ("zeros.nii", "all zero")),
    ("2d-nifti", S, ("input={root}/flat.nii",), ("flat.nii", "3D")),
    (
        "wrong-size-for-the-prior-without-fit",
        R,
        ("input={root}/tiny.nii", "method=dds", "fit=none"),
        ("fit=none", "(4, 4, 4)", "(4, 64, 64)", "fit=resample"),
    ),
    ("too-small-for-the-prior", R, (f"phantom.size={SIZE}", "method=dds"), ("16x16", "prior")),
    ("fit-mode-unknown", R, ("input={volume}", "fit=zoom"), ("fit='zoom'", "crop_pad")),
    ("fit_shape-not-a-list", R, ("input={volume}", "fit_shape=7"), ("fit_shape", "[D, H, W]")),
    ("fit_shape-two-sizes", R, ("input={volume}", "fit_shape=[8,8]"), ("fit_shape", "[D, H, W]")),
    ("fit_shape-zero", R, ("input={volume}", "fit_shape=[null,0,8]"), ("fit shape", ">= 1")),
    ("fit_shape-fraction", R, ("input={volume}", "fit_shape=[null,8.5,8]"), ("fit shape",)),
    ("fifo-nifti", S, ("input={root}/fifo.nii",), ("fifo.nii", "not a regular file")),
    (
        "folder-as-nifti",
        EV,
        ("reconstruction={root}/folder.nii", "ground_truth={volume}"),
        ("folder.nii", "not a regular file"),
    ),
    # damaged measurements and priors
    ("truncated-measurements", R, ("measurements={cut}",), ("measurements.safetensors",)),
    ("broken-geometry", R, ("measurements={nogeo}",), ("geometry.json",)),
    (
        "prior-weights-not-safetensors",
        R,
        ("method=dds", "prior={bad_prior}"),
        ("model.safetensors",),
    ),
    ("prior-is-a-file", R, ("method=dds", "prior={volume}"), ("prior", "not a folder")),
    # options of the wrong type or range
    ("phantom-size-zero", S, ("phantom.size=0",), ("phantom.size",)),
    ("phantom-size-not-a-number", S, ("phantom.size=abc",), ("phantom.size", "abc")),
    ("n_views-zero", S, ("operator.n_views=0",), ("n_views",)),
    ("noise-negative", S, ("noise_std=-1",), ("noise_std",)),
    ("steps-zero", "train", ("train.steps=0", "prior.n_volumes=1"), ("train.steps",)),
    (
        "batch-negative",
        "train",
        ("train.batch_size=-2", "prior.n_volumes=1"),
        ("train.batch_size",),
    ),
    (
        "dds-steps-zero",
        R,
        ("phantom.size=32", "method=dds", "dds.steps=0"),
        ("dds.steps",),
    ),
    (
        "tv-iterations-negative",
        R,
        (f"phantom.size={SIZE}", "tv_admm.n_iter=-1"),
        ("tv_admm.n_iter",),
    ),
    (
        "prior_chunk-zero",
        R,
        (f"phantom.size={SIZE}", "method=dds", "prior_chunk=0"),
        ("prior_chunk",),
    ),
    # outputs that cannot be written
    (
        "run-folder-under-a-file",
        S,
        ("hydra.run.dir={root}/file/run",),
        ("hydra.run.dir", "is a file, not a folder"),
    ),
]


@pytest.mark.parametrize(("verb", "args", "needles"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_bad_input_is_one_line(files, bad_input, verb, args, needles):
    bad_input("medical", verb, args, needles, files)


def test_a_cut_short_last_checkpoint_resumes_from_the_newest_complete_one(tmp_path):
    """Training survives a damaged last.ckpt: the rerun resumes from the step checkpoint beside
    it, says so in one line, and exports the same weights as an undamaged run."""
    from safetensors.torch import load_file

    args = ["prior.image_size=8", "prior.n_volumes=1", "train.batch_size=4", "train.warmup=1",
            "train.checkpoint_every=2", "trainer.accelerator=cpu", "trainer.devices=1"]  # fmt: skip
    for name in ("a", "b"):
        assert console(["medical", "train", *args, "train.steps=2",
                        f"hydra.run.dir={tmp_path / name}"]) == 0  # fmt: skip
    last = tmp_path / "b" / "train" / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])
    train = ["medical", "train", *args, "train.steps=4"]
    assert console([*train, f"hydra.run.dir={tmp_path / 'a'}"]) == 0
    with pytest.warns(UserWarning, match=r"last\.ckpt: damaged .* from step=00000002\.ckpt") as w:
        assert console([*train, f"hydra.run.dir={tmp_path / 'b'}"]) == 0
    assert len([x for x in w if "damaged" in str(x.message)]) == 1
    first, second = (load_file(tmp_path / n / "model" / "model.safetensors") for n in "ab")
    assert first.keys() == second.keys() and all((first[k] == second[k]).all() for k in first)
    assert json.loads((tmp_path / "b" / "model" / "config.json").read_text())
