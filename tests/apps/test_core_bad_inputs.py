"""Bad input to `polydiff core data|toy`: one line naming the option, exit 2, nothing written
(issue 14). Every case is refused before training, so the matrix runs in seconds."""

from __future__ import annotations

from pathlib import Path

import pytest

TINY = ("train.steps=2", "data.n_train=64", "data.n_eval=64", "sample.nfe=[2]",
        "sample.solvers=[ddim]", "trainer.accelerator=cpu")  # fmt: skip
CASES = [
    ("data-n-zero", "data", ("data.n=0",), ("data.n",)),
    ("data-n-not-a-number", "data", ("data.n=abc",), ("data.n", "abc")),
    ("unknown-distribution", "data", ("data.name=spiral",), ("spiral",)),
    ("steps-zero", "toy", (*TINY, "train.steps=0"), ("train.steps",)),
    ("steps-negative", "toy", (*TINY, "train.steps=-3"), ("train.steps", "-3")),
    ("lr-not-a-number", "toy", (*TINY, "train.lr=abc"), ("lr", "abc")),
    ("width-zero", "toy", (*TINY, "net.hidden=0"), ("net.hidden",)),
    ("depth-negative", "toy", (*TINY, "net.depth=-1"), ("net.depth",)),
    ("nfe-zero", "toy", (*TINY, "sample.nfe=[0]"), ("sample.nfe",)),
    ("nfe-not-a-number", "toy", (*TINY, "sample.nfe=[abc]"), ("sample.nfe", "abc")),
    ("unknown-solver", "toy", (*TINY, "sample.solvers=[nope]"), ("sample.solvers", "nope")),
    (
        "solver-for-a-discrete-path",
        "toy",
        (*TINY, "sample.solvers=[ddim,mdlm]"),
        ("sample.solvers", "'mdlm'", "MaskedDiffusion", "not a VPLinear"),
    ),
    ("unknown-path", "toy", (*TINY, "path=nope"), ("path", "nope")),
    ("no-such-accelerator", "toy", (*TINY, "trainer.accelerator=mps"), ("trainer.accelerator",)),
    (
        "run-folder-under-a-file",
        "toy",
        (*TINY, "hydra.run.dir={root}/file/run"),
        ("hydra.run.dir", "is a file, not a folder"),
    ),
    (
        "run-folder-not-writable",
        "toy",
        (*TINY, "hydra.run.dir=/proc/polydiff/run"),
        ("hydra.run.dir", "/proc is not writable"),
    ),
]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("core_bad")
    (root / "file").write_text("a regular file")
    return {"root": root}


@pytest.mark.parametrize(("verb", "args", "needles"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_bad_input_is_one_line(files, bad_input, verb, args, needles):
    bad_input("core", verb, args, needles, files)


def test_a_rerun_in_the_same_run_folder_says_what_it_replaced(tmp_path, capsys):
    from polydiff.apps.cli import console

    argv = ["core", "data", "data.n=16", f"hydra.run.dir={tmp_path / 'run'}"]
    assert console(argv) == 0
    assert "replaced" not in capsys.readouterr().out
    assert console(argv) == 0
    out = capsys.readouterr().out
    assert "replaced 2 file(s) an earlier run left in" in out
    assert "data.png, data.safetensors" in out
