"""Bad input to `polydiff speech ...`: one line naming the file or option, exit 2, nothing
half-written (issue 14). Runs in-process on a tiny 8 kHz corpus and a tiny trained model."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from polydiff.apps.cli import console

SR = 8000
TINY_CORPUS = ("data.train=2", "data.valid=0", "data.test=2", f"data.sample_rate={SR}",
               "data.noise_kinds=[white]", "data.babble_talkers=1")  # fmt: skip
TINY_MODEL = (f"spec.sample_rate={SR}", "spec.n_fft=62", "spec.hop_length=16",
              "spec.frame_multiple=8", "net.nf=8", "net.ch_mult=[1,2,2]", "train.steps=1",
              "train.batch_size=2", "train.num_frames=32", "trainer.accelerator=cpu")  # fmt: skip


def _wav(path: Path, x: np.ndarray, subtype: str = "PCM_16") -> Path:
    sf.write(path, x, SR, subtype=subtype)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A corpus, a model trained on it, and damaged audio, folders and model copies."""
    root = tmp_path_factory.mktemp("speech_bad")
    assert console(["speech", "data", *TINY_CORPUS, f"hydra.run.dir={root / 'data'}"]) == 0
    corpus = root / "data" / "corpus"
    train = ["speech", "train", f"data_root={corpus}", *TINY_MODEL, f"hydra.run.dir={root / 't'}"]
    assert console(train) == 0
    model, noisy = root / "t" / "model", corpus / "test" / "noisy" / "test_00000.wav"
    good = noisy.read_bytes()
    (root / "empty.wav").write_bytes(b"")
    _wav(root / "header_only.wav", np.zeros(0, np.float32))
    (root / "truncated.wav").write_bytes(good[: 44 + (len(good) - 44) // 3])
    (root / "text.wav").write_text("this is a text file renamed .wav\n")
    x = sf.read(noisy, dtype="float32")[0]
    flac = _wav(root / "good.flac", np.tile(x, 4)).read_bytes()  # opens; frames fail mid-stream
    middle = len(flac) // 2
    (root / "lost_sync.flac").write_bytes(flac[:middle] + bytes(2000) + flac[middle + 2000 :])
    (root / "cut.flac").write_bytes(flac[:middle])
    _wav(root / "nan.wav", np.where(np.arange(x.size) == 100, np.nan, x), "FLOAT")
    _wav(root / "inf.wav", np.where(np.arange(x.size) == 100, np.inf, x), "FLOAT")
    _wav(root / "silent.wav", np.zeros_like(x))
    _wav(root / "short.wav", x[:20])
    os.mkfifo(root / "fifo.wav")
    (root / "folder.wav").mkdir()
    (root / "file").write_text("a regular file")
    (root / "exists.wav").write_bytes(good)
    for name, damage in [
        ("truncated_model", lambda d: _cut(d / "model.safetensors")),
        ("text_model", lambda d: (d / "model.safetensors").write_text("not weights")),
        ("broken_config", lambda d: (d / "config.json").write_text("{not json")),
    ]:
        shutil.copytree(model, root / name)
        damage(root / name)
    nan_dir = root / "nan_enhanced"  # an enhanced folder whose first file holds NaN
    nan_dir.mkdir()
    for i, p in enumerate(sorted((corpus / "test" / "clean").glob("*.wav"))):
        y = sf.read(p, dtype="float32")[0]
        _wav(nan_dir / p.name, np.full_like(y, np.nan) if i == 0 else y, "FLOAT")
    return {"root": root, "corpus": corpus, "model": model, "noisy": noisy,
            "clean_dir": corpus / "test" / "clean", "noisy_dir": corpus / "test" / "noisy",
            "clean": corpus / "test" / "clean" / "test_00000.wav"}  # fmt: skip


def _cut(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:200])


M, E = "model={model}", "enhance"
CASES = [
    # damaged audio given to enhance
    ("missing-input", E, (M, "input={root}/missing.wav"), ("input", "missing.wav")),
    ("empty-wav", E, (M, "input={root}/empty.wav"), ("empty.wav", "empty file (0 bytes)")),
    ("header-only-wav", E, (M, "input={root}/header_only.wav"), ("header_only.wav", "empty")),
    ("truncated-wav", E, (M, "input={root}/truncated.wav"), ("truncated.wav", "truncated")),
    (
        "flac-damaged-mid-stream",
        E,
        (M, "input={root}/lost_sync.flac"),
        ("lost_sync.flac", "damaged audio data"),
    ),
    ("flac-cut-mid-stream", E, (M, "input={root}/cut.flac"), ("cut.flac", "damaged audio data")),
    ("text-renamed-wav", E, (M, "input={root}/text.wav"), ("text.wav", "not a readable audio")),
    ("nan-wav", E, (M, "input={root}/nan.wav"), ("nan.wav", "NaN")),
    ("inf-wav", E, (M, "input={root}/inf.wav"), ("inf.wav", "infinite")),
    ("silent-wav", E, (M, "input={root}/silent.wav"), ("silent.wav", "silence")),
    ("too-short-wav", E, (M, "input={root}/short.wav"), ("short.wav", "too short")),
    ("fifo-wav", E, (M, "input={root}/fifo.wav"), ("fifo.wav", "not a regular file")),
    ("folder-named-wav", E, (M, "input={root}/folder.wav"), ("folder.wav", "no .wav/.flac")),
    ("text-file-input", E, (M, "input={root}/file"), ("input", "not a .wav/.flac file")),
    # outputs that cannot be written, or exist already
    (
        "output-under-a-file",
        E,
        (M, "input={noisy}", "output={root}/file/out.wav"),
        ("output", "file", "not a folder"),
    ),
    (
        "output-exists",
        E,
        (M, "input={noisy}", "output={root}/exists.wav"),
        ("exists.wav", "exists already", "overwrite=true"),
    ),
    (
        "run-folder-under-a-file",
        E,
        (M, "input={noisy}", "hydra.run.dir={root}/file/run"),
        ("hydra.run.dir", "is a file, not a folder"),
    ),
    # options of the wrong type or range
    ("N-negative", E, (M, "input={noisy}", "N=-1"), ("N",)),
    ("N-not-a-number", E, (M, "input={noisy}", "N=abc"), ("N", "abc")),
    ("chunk-not-a-number", E, (M, "input={noisy}", "chunk_seconds=abc"), ("chunk_seconds", "abc")),
    ("chunk-zero", E, (M, "input={noisy}", "chunk_seconds=0"), ("chunk_seconds",)),
    ("unknown-subtype", E, (M, "input={noisy}", "subtype=MP3"), ("subtype", "MP3")),
    ("train-steps-zero", "train", ("data_root={corpus}", "train.steps=0"), ("train.steps",)),
    (
        "normalize-unknown",
        "train",
        ("data_root={corpus}", "train.normalize=file"),
        ("train.normalize", "noisy_file"),
    ),
    (
        "network-width-zero",
        "train",
        ("data_root={corpus}", *TINY_MODEL, "net.nf=0"),
        ("net.nf", "0"),
    ),
    ("lr-not-a-number", "train", ("data_root={corpus}", "train.lr=abc"), ("train.lr", "abc")),
    (
        "num_frames-negative",
        "train",
        ("data_root={corpus}", "train.num_frames=-3"),
        ("train.num_frames",),
    ),
    (
        "init-of-another-method",
        "train",
        ("data_root={corpus}", "method=storm", "train.init=sgmse_micro_8k"),
        ("train.init", "'sgmse' model cannot start a 'storm' run"),
    ),
    (
        "init-of-another-size",
        "train",
        ("data_root={corpus}", *TINY_MODEL, "train.init=shipped"),
        ("train.init", "its networks have other layers than this sgmse run's"),
    ),
    ("init-missing", "train", ("data_root={corpus}", "train.init={root}/nope"), ("train.init",)),
    ("data-rate-not-a-number", "data", ("data.sample_rate=abc",), ("data.sample_rate", "abc")),
    ("data-size-negative", "data", ("data.train=-1",), ("data.train", "-1")),
    # damaged models
    ("model-is-a-file", E, ("model={noisy}", "input={noisy}"), ("model", "not a folder")),
    (
        "truncated-weights",
        E,
        ("model={root}/truncated_model", "input={noisy}"),
        ("model.safetensors",),
    ),
    ("text-as-weights", E, ("model={root}/text_model", "input={noisy}"), ("model.safetensors",)),
    ("broken-config", E, ("model={root}/broken_config", "input={noisy}"), ("config.json",)),
    # evaluate
    (
        "eval-rate-not-a-number",
        "evaluate",
        ("clean={clean_dir}", "enhanced={clean_dir}", "sample_rate=abc"),
        ("sample_rate", "abc"),
    ),
    (
        "eval-clean-is-a-file",
        "evaluate",
        ("clean={clean}", "enhanced={clean_dir}"),
        ("clean", "not a folder"),
    ),
    (
        "eval-nan-enhanced",
        "evaluate",
        ("clean={clean_dir}", "enhanced={root}/nan_enhanced"),
        ("test_00000.wav", "NaN"),
    ),
]


@pytest.mark.parametrize(("verb", "args", "needles"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_bad_input_is_one_line(files, bad_input, verb, args, needles):
    bad_input("speech", verb, args, needles, files)
    assert (files["root"] / "exists.wav").read_bytes() == files["noisy"].read_bytes()


def test_an_existing_output_is_replaced_only_when_asked_and_the_console_says_so(
    files, tmp_path, capsys
):
    out = tmp_path / "out.wav"
    shutil.copy(files["noisy"], out)
    argv = ["speech", "enhance", f"model={files['model']}", f"input={files['noisy']}",
            f"output={out}", "N=1", "overwrite=true", f"hydra.run.dir={tmp_path}/r"]  # fmt: skip
    capsys.readouterr()
    assert console(argv) == 0
    assert "replaced 1 existing" in capsys.readouterr().out
    assert out.read_bytes() != files["noisy"].read_bytes()
    report = json.loads((tmp_path / "r" / "enhance.json").read_text())
    assert report["files"] == {"test_00000.wav": "replaced"}


def test_a_folder_keeps_existing_outputs_and_says_so(files, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(files["noisy"], out / "test_00000.wav")
    argv = ["speech", "enhance", f"model={files['model']}", f"input={files['noisy_dir']}",
            f"output={out}", "N=1", f"hydra.run.dir={tmp_path / 'r'}"]  # fmt: skip
    capsys.readouterr()
    assert console(argv) == 0
    printed = capsys.readouterr().out
    assert "kept 1 existing" in printed and "overwrite=true" in printed
    assert (out / "test_00000.wav").read_bytes() == files["noisy"].read_bytes()
    assert (out / "test_00001.wav").is_file()


@pytest.mark.parametrize("change", ["rate", "one-sample-longer", "one-sample-shorter"])
def test_evaluate_accepts_another_rate_or_a_one_sample_difference(files, tmp_path, change):
    """An enhanced file at 16 kHz against an 8 kHz reference, or one sample longer / shorter
    (resampling rounds the length): scored, and scored the same as the matching file."""
    enhanced = tmp_path / "enhanced"
    enhanced.mkdir()
    for p in sorted(files["clean_dir"].glob("*.wav")):
        x = sf.read(p, dtype="float32")[0]
        if change == "rate":
            from polydiff.speech.audio import resample

            sf.write(enhanced / p.name, resample(x, SR, 2 * SR), 2 * SR, subtype="FLOAT")
        else:
            y = np.append(x, x[-1]) if change == "one-sample-longer" else x[:-1]
            sf.write(enhanced / p.name, y, SR, subtype="FLOAT")
    args = [f"clean={files['clean_dir']}", f"enhanced={enhanced}", f"sample_rate={SR}",
            "plot=false", f"hydra.run.dir={tmp_path / 'r'}"]  # fmt: skip
    assert console(["speech", "evaluate", *args]) == 0
    summary = json.loads((tmp_path / "r" / "metrics.json").read_text())["summary"]
    assert summary["si_sdr"]["n"] == 2 and summary["si_sdr"]["mean"] > 25
    assert summary["estoi"]["mean"] > 0.95
