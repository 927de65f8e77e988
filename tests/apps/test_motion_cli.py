"""End to end: `polydiff motion data|train|generate|evaluate` and the demo stage at tiny sizes,
plus the bad-input matrix (exit code 2, one stderr line naming the file or option, nothing
written). The verbs run in-process through `polydiff.apps.cli.dispatch`."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch

from polydiff.apps.cli import dispatch
from polydiff.motion.data import FPS, generate_clip, generate_corpus, read_corpus, write_corpus
from polydiff.motion.io import read_bvh, write_bvh
from polydiff.motion.mdm import load_mdm
from polydiff.motion.metrics import motion_metrics

TINY_CORPUS = ("corpus.clips_per_label=1", "corpus.seconds=2.5")
TINY_MODEL = (
    "window=16",
    "stride=8",
    "model.d_model=16",
    "model.n_layers=1",
    "model.n_heads=2",
    "train.batch_size=8",
    "train.warmup=1",
    "train.checkpoint_every=2",
)


def _run(*args: str) -> int:
    return dispatch(["motion", *args])


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """data -> train (4 steps, then resumed to 6) on its corpus."""
    root = tmp_path_factory.mktemp("motion_cli")
    assert _run("data", *TINY_CORPUS, f"hydra.run.dir={root / 'data'}") == 0
    corpus = root / "data" / "corpus"
    train = ("train", f"data={corpus}", *TINY_MODEL, f"hydra.run.dir={root / 'train'}")
    assert _run(*train, "train.steps=4") == 0
    first = json.loads((root / "train" / "model" / "training.json").read_text())
    assert _run(*train, "train.steps=6") == 0  # resumes from checkpoints/last.ckpt
    return {"root": root, "corpus": corpus, "train": root / "train", "first": first}


def test_data_writes_the_corpus_as_labelled_bvh(runs):
    counts = json.loads((runs["root"] / "data" / "labels.json").read_text())
    assert len(counts) == 21 and set(counts.values()) == {1}  # 7 actions x 3 styles
    assert "walk/tired           1 clips" in (runs["root"] / "data" / "polydiff.log").read_text()
    clips = read_corpus(runs["corpus"])
    expected = generate_corpus(1, seconds=2.5)
    assert [(c.action, c.style) for c in clips] == sorted((c.action, c.style) for c in expected)
    by_label = {(c.action, c.style): c.positions for c in expected}
    for clip in clips:  # the BVH files hold the generated joint positions exactly
        assert torch.allclose(clip.positions, by_label[clip.action, clip.style], atol=1e-9)


def test_data_copies_a_user_folder_at_20_fps_on_its_bones(runs, tmp_path):
    motion = generate_clip("run", seconds=1.0, fps=40.0).motion()
    motion.skeleton = motion.skeleton.with_offsets(motion.skeleton.offsets * 1.1)  # a taller body
    (tmp_path / "mocap" / "run").mkdir(parents=True)
    write_bvh(tmp_path / "mocap" / "run" / "take1.bvh", motion)
    assert _run("data", f"input={tmp_path / 'mocap'}", f"hydra.run.dir={tmp_path / 'd'}") == 0
    assert json.loads((tmp_path / "d" / "labels.json").read_text()) == {"run/neutral": 1}
    (copy,) = read_corpus(tmp_path / "d" / "corpus")
    assert copy.fps == FPS and len(copy.positions) == 20
    assert torch.allclose(copy.positions, motion.positions[::2], atol=1e-9)


def test_train_resumes_and_exports_a_loadable_model(runs):
    info = json.loads((runs["train"] / "model" / "training.json").read_text())
    assert runs["first"]["steps"] == 4 and info["steps"] == 6  # continued, not restarted
    assert math.isfinite(info["final_loss"])
    assert (runs["train"] / "checkpoints" / "last.ckpt").is_file()
    log = (runs["train"] / "polydiff.log").read_text()
    assert re.search(r"step 6: final training loss \d+\.\d+", log)
    method = load_mdm(runs["train"] / "model")
    assert method.config.frames == 16 and method.config.d_model == 16


def test_generate_writes_bvh_and_gif_and_evaluate_scores_them(runs, tmp_path):
    out = tmp_path / "out"
    model = f"model={runs['train'] / 'model'}"
    args = ("actions=[walk,jump]", "samples_per_action=2", "steps=2", "solver=dpmpp_2m")
    assert _run("generate", model, *args, "gifs=1", f"output={out}", "cfg_scale=3",
                f"hydra.run.dir={tmp_path / 'r'}") == 0  # fmt: skip
    files = sorted(p.name for p in out.iterdir())
    expected = ["jump_000.bvh", "jump_001.bvh", "metrics.json", "walk_000.bvh", "walk_000.gif"]
    assert files == sorted([*expected, "walk_001.bvh"])
    assert (out / "walk_000.gif").read_bytes()[:3] == b"GIF"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["clips"] == 4 and metrics["steps"] == 2 and metrics["guidance"] == 3.0
    assert metrics["seconds"] == pytest.approx(4 * 16 / FPS)  # 16 frames of the model window
    # the printed numbers are those of the files written
    read = {p.name: read_bvh(p).positions for p in sorted(out.glob("*.bvh"))}
    again = motion_metrics(read, FPS)
    for key in ("foot_skating", "floor_penetration", "jerk"):
        assert metrics[key] == pytest.approx(again[key], rel=1e-9, abs=1e-12)
    assert _run("evaluate", f"input={out}", *TINY_CORPUS, f"hydra.run.dir={tmp_path / 'e'}") == 0
    rows = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert rows["input"]["jerk"] == pytest.approx(metrics["jerk"], rel=1e-9)
    corpus = rows["corpus"]  # the procedural corpus: planted feet, nothing below the floor
    assert (
        corpus["clips"] == 21 and corpus["foot_skating"] == 0 and corpus["floor_penetration"] == 0
    )
    md = (tmp_path / "e" / "metrics.md").read_text()
    assert re.search(r"^\| corpus \| 21 \|  \| \d+\.\d\d \| 0\.000 \| 0\.0000 \|", md, re.M), md
    # FID and diversity in the shipped encoder's features, against 16-frame corpus windows
    assert rows["input"]["fid"] > 0 and rows["input"]["diversity"] > 0
    assert corpus["diversity"] > 0 and corpus["windows"] == 21 * 3  # 50 frames: 3 windows
    # the same seed gives the same motion
    assert _run("generate", model, *args, "gifs=0", f"hydra.run.dir={tmp_path / 'g'}",
                "cfg_scale=3") == 0  # fmt: skip
    assert (tmp_path / "g" / "jump_001.bvh").read_text() == (out / "jump_001.bvh").read_text()


def test_evaluate_a_model_measures_its_speed_against_a_bvh_reference(runs, tmp_path):
    model = f"model={runs['train'] / 'model'}"
    run = tmp_path / "e"
    args = ("actions=idle", "steps=2", f"reference={runs['corpus']}", f"hydra.run.dir={run}")
    assert _run("evaluate", model, *args) == 0
    rows = json.loads((run / "metrics.json").read_text())
    assert rows["generated"]["clips"] == 1 and rows["generated"]["seconds_per_second"] > 0
    assert rows["corpus"]["clips"] == 21 and (run / "samples" / "idle_000.bvh").is_file()


def test_emdm_and_encoder_train_and_serve_generate_and_evaluate(runs, tmp_path):
    """method=emdm: a few-step GAN that generate samples in its own steps; method=encoder:
    the FID features evaluate uses with encoder=."""
    corpus = f"data={runs['corpus']}"
    emdm = tmp_path / "emdm"
    gan = ("method=emdm", "emdm.steps=2", "emdm.latent_dim=4", "emdm.disc_layers=1",
           "emdm.disc_lr_scale=6.25")  # fmt: skip
    init = f"emdm.init={runs['train'] / 'model'}"  # the generator starts from the tiny MDM
    assert _run("train", corpus, *TINY_MODEL, *gan, init, "train.steps=3",
                f"hydra.run.dir={emdm}") == 0  # fmt: skip
    model = load_mdm(emdm / "model")
    assert type(model).__name__ == "MotionDDGAN" and model.config.steps == 2
    assert model.net.discriminator is None and model.config.mdm_time  # generator-only export
    encoder = tmp_path / "encoder"
    small = ("encoder.width=8", "encoder.embed_dim=4", "encoder.layers=1", "encoder.steps=3")
    assert _run("train", corpus, "method=encoder", "window=16", *small,
                f"hydra.run.dir={encoder}") == 0  # fmt: skip
    run = tmp_path / "e"
    assert _run("evaluate", f"model={emdm / 'model'}", f"encoder={encoder / 'encoder'}",
                "actions=[walk,run]", *TINY_CORPUS, f"hydra.run.dir={run}") == 0  # fmt: skip
    rows = json.loads((run / "metrics.json").read_text())
    generated = rows["generated"]
    assert generated["steps"] == 2 and generated["clips"] == 2 and generated["fid"] > 0
    assert len(list((run / "samples").glob("*.bvh"))) == 2


def test_autoregressive_trains_and_streams_through_generate(runs, tmp_path):
    """method=autoregressive: the frame-by-frame streamer; generate writes its clips."""
    stream = tmp_path / "stream"
    options = ("method=autoregressive", "autoregressive.history=3", "autoregressive.steps=2")
    assert _run("train", f"data={runs['corpus']}", *TINY_MODEL, *options, "train.steps=3",
                f"hydra.run.dir={stream}") == 0  # fmt: skip
    model = load_mdm(stream / "model")
    assert type(model).__name__ == "MotionStreamer" and model.config.history == 3
    run = tmp_path / "g"
    assert _run("generate", f"model={stream / 'model'}", "actions=[walk]", "frames=12",
                "cfg_scale=1", "gifs=0", f"hydra.run.dir={run}") == 0  # fmt: skip
    (bvh,) = (run).glob("*.bvh")
    assert read_bvh(bvh).positions.shape[0] == 12


def test_quick_demo_stage_end_to_end(tmp_path, monkeypatch):
    """`polydiff demo domains=[motion] quick=true`: the shipped checkpoint, two actions."""
    monkeypatch.chdir(tmp_path)
    assert dispatch(["demo", "domains=[motion]", "quick=true"]) == 0
    (run,) = (tmp_path / "runs" / "demo").iterdir()
    report = (run / "report.md").read_text()
    assert re.search(r"^\| motion \| ok \|", report, re.M), report
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert links == ["motion/samples/run_000.gif", "motion/samples/walk_000.gif"]
    assert all((run / link).read_bytes()[:3] == b"GIF" for link in links)
    rows = json.loads((run / "motion" / "metrics.json").read_text())
    assert rows["generated"]["steps"] == 10 and rows["generated"]["clips"] == 2
    assert rows["corpus"]["foot_skating"] == 0
    assert "| generated | 2 |" in report and "| corpus | 21 |" in report


# --- bad input: exit code 2, one stderr line naming the file or option, nothing written ---


def _bvh(folder: Path, name: str, edit=None, action: str = "walk") -> Path:
    """A folder <folder>/<action>/<name>.bvh holding a short clip, its text edited by `edit`."""
    path = folder / action / f"{name}.bvh"
    path.parent.mkdir(parents=True)
    write_bvh(path, generate_clip("walk", seconds=0.5).motion())
    if edit:
        path.write_text(edit(path.read_text()))
    return folder


def _nan_frame(text: str) -> str:
    lines = text.splitlines()
    lines[-3] = " ".join(["nan", *lines[-3].split()[1:]])
    return "\n".join(lines) + "\n"


def _two_frames(text: str) -> str:
    head, frames = text.split("Frames: ")
    lines = frames.splitlines()
    return head + "Frames: 2\n" + "\n".join(lines[1:4]) + "\n"


BAD_BVH = {
    "missing channels": (
        lambda t: t.replace("CHANNELS 3 Zrotation Xrotation Yrotation", "CHANNELS 2 Z", 1).replace(
            "CHANNELS 2 Z", "CHANNELS 2 Zrotation Xrotation", 1
        ),
        "missing channels",
    ),
    "another skeleton": (lambda t: t.replace("JOINT left_knee", "JOINT tail"), "tail"),
    "NaN frames": (_nan_frame, "non-finite"),
    "zero-length clip": (lambda t: re.sub(r"Frames: \d+", "Frames: 0", t), "zero-length"),
}


@pytest.fixture
def bad(tmp_path) -> dict[str, Path]:
    """Inputs for the matrix: bad BVH folders, a non-model folder, a regular file."""
    out = {name: _bvh(tmp_path / name, "take", edit) for name, (edit, _) in BAD_BVH.items()}
    out["short clip"] = _bvh(tmp_path / "short", "take", _two_frames)
    out["dance folder"] = _bvh(tmp_path / "dance", "take", action="dance")
    out["empty"] = tmp_path / "empty"
    out["empty"].mkdir()
    out["file"] = tmp_path / "a_file.txt"
    out["file"].write_text("not a folder\n")
    write_corpus(generate_corpus(1, seconds=0.5, actions=("walk",)), tmp_path / "short_corpus")
    out["short_corpus"] = tmp_path / "short_corpus"
    return out


CASES = [  # (verb and options with {name} placeholders, the text the error line must hold)
    *[(("train", f"data={{{name}}}"), needle) for name, (_, needle) in BAD_BVH.items()],
    (("data", "input={missing channels}"), "take.bvh"),
    (("evaluate", "input={NaN frames}"), "take.bvh"),
    (("evaluate", "input={short clip}", *TINY_CORPUS), "jerk needs at least 4"),
    (("data", "input={dance folder}"), "unknown action folder 'dance'"),
    (("data", "input={empty}"), "no .bvh files"),
    (("data", "input={file}"), "input="),
    (("data", "corpus.clips_per_label=0"), "corpus.clips_per_label"),
    (("data", "input={NaN frames}", "bvh.scale=-1"), "bvh.scale"),
    (("generate", "actions=[walk,dance]"), "action: unknown label 'dance'"),
    (("generate", "steps=0"), "steps=0"),
    (("generate", "steps=2.5"), "steps=2.5"),
    (("generate", "cfg_scale=-1"), "cfg_scale=-1"),
    (("generate", "solver=rk99"), "solver=rk99"),
    (("generate", "samples_per_action=0"), "samples_per_action"),
    (("generate", "gifs=-1"), "gifs=-1"),
    (("generate", "model={empty}"), "not a motion model"),
    (("generate", "model={root}/nowhere"), "model="),
    (("generate", "output={file}/out"), "is a file, not a folder"),
    (("evaluate", "input={empty}"), "no .bvh files"),
    (("evaluate", "model={dance folder}"), "not a motion model"),
    (("train", "train.steps=0"), "train.steps"),
    (("train", "train.ema=1.5"), "train.ema"),
    (("train", "data={short_corpus}", "window=40"), "window: 40 frames"),
    (("train", "method=ddpm"), "method=ddpm: unknown"),
    (("train", "method=emdm", "emdm.steps=0"), "emdm.steps"),
    (("train", "method=emdm", "emdm.disc_lr_scale=0"), "emdm.disc_lr_scale"),
    (("train", "method=emdm", "emdm.init={root}/nowhere"), "emdm.init="),
    (("train", "method=emdm", "emdm.init=shipped", "emdm.mdm_time=false"), "emdm.mdm_time"),
    (("train", "method=encoder", "encoder.lr=0"), "encoder.lr"),
    (("evaluate", "encoder={empty}"), "not a motion encoder"),
    (("evaluate", "encoder={root}/nowhere"), "encoder="),
]


@pytest.mark.parametrize(("args", "needle"), CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_input_is_one_line_and_exit_2(args, needle, bad, tmp_path, capsys):
    args = tuple(a.format_map({**bad, "root": tmp_path}) for a in args)
    run = tmp_path / "run"
    before = {p for p in tmp_path.rglob("*")}
    capsys.readouterr()
    assert _run(*args, f"hydra.run.dir={run}") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("polydiff: error: polydiff motion"), err
    assert needle in err[0], err[0]
    written = {p for p in tmp_path.rglob("*") if p not in before and ".hydra" not in p.parts}
    assert written <= {run, run / "polydiff.log"}, sorted(written)
