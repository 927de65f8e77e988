"""Bad input to `polydiff text ...`: one line naming the file or option, exit 2, nothing
half-written (issue 14). Runs in-process on a tiny corpus and a tiny trained model."""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import pytest

from polydiff.apps.cli import console

TINY = ("data.seq_len=32", "model.d_model=32", "model.n_layers=1", "model.n_heads=2",
        "train.steps=2", "train.batch_size=8", "train.warmup=1", "train.val_rows=8",
        "trainer.accelerator=cpu", "trainer.devices=1")  # fmt: skip


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A corpus, a model trained on it, and damaged copies of both."""
    root = tmp_path_factory.mktemp("text_bad")
    rng = random.Random(0)
    words = "the king queen lord love night day sword crown heart".split()
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(" ".join(rng.choices(words, k=8)) for _ in range(400)))
    assert console(["text", "train", f"data.source={corpus}", *TINY,
                     f"hydra.run.dir={root / 'model'}"]) == 0  # fmt: skip
    export = root / "model" / "train" / "export"
    damaged = {}
    for name, damage in [
        ("truncated", lambda f: f.write_bytes(f.read_bytes()[:100])),
        ("notweights", lambda f: f.write_text("not a safetensors file")),
    ]:
        copy = root / name
        shutil.copytree(export, copy)
        damage(copy / "model.safetensors")
        damaged[name] = copy
    badconfig = root / "badconfig"
    shutil.copytree(export, badconfig)
    (badconfig / "config.json").write_text("{not json")
    (root / "empty.txt").write_text(" \n")
    (root / "binary.txt").write_bytes(b"\x00\x01\x02 not text")
    (root / "nodocs").mkdir()
    os.mkfifo(root / "fifo.txt")
    (root / "file").write_text("a regular file")
    return {"root": root, "corpus": corpus, "model": export, "badconfig": badconfig, **damaged,
            "file": root / "file"}  # fmt: skip


def _cases():
    C = "data.source={corpus}"
    M = "checkpoint={model}"
    return [
        # damaged or unusable corpora
        ("missing-corpus", "data", ("data.source={root}/missing.txt",), ("missing.txt",)),
        ("empty-corpus", "data", ("data.source={root}/empty.txt",), ("empty.txt",)),
        ("binary-corpus", "data", ("data.source={root}/binary.txt",), ("binary.txt",)),
        ("folder-without-txt", "data", ("data.source={root}/nodocs",), ("nodocs",)),
        (
            "fifo-corpus",
            "data",
            ("data.source={root}/fifo.txt",),
            ("fifo.txt", "not a regular file"),
        ),
        # options of the wrong type or range
        ("seq_len-1", "data", (C, "data.seq_len=1"), ("data.seq_len",)),
        ("seq_len-not-a-number", "data", (C, "data.seq_len=abc"), ("data.seq_len", "'abc'")),
        ("unknown-tokenizer", "data", (C, "tokenizer.kind=wordpiece"), ("tokenizer.kind",)),
        ("steps-zero", "train", (C, "train.steps=0"), ("train.steps", "positive")),
        ("steps-negative", "train", (C, "train.steps=-5"), ("train.steps", "-5")),
        ("width-zero", "train", (C, "model.d_model=0"), ("model.d_model", "positive")),
        (
            "batch_size-not-a-number",
            "train",
            (C, "train.batch_size=abc"),
            ("train.batch_size", "'abc'"),
        ),
        ("lr-not-a-number", "train", (C, "train.lr=abc", *TINY), ("lr", "'abc'")),
        ("lr-zero", "train", (C, "train.lr=0", *TINY), ("lr", "positive")),
        ("ema-above-1", "train", (C, "train.ema=1.5", *TINY), ("ema",)),
        ("sample-steps-zero", "sample", (M, "steps=0"), ("steps", "positive")),
        ("length-negative", "sample", (M, "length=-3"), ("length", "positive")),
        ("n-not-a-number", "sample", (M, "n=abc"), ("n ", "'abc'")),
        ("temperature-zero", "sample", (M, "temperature=0"), ("temperature",)),
        ("top_p-above-1", "sample", (M, "top_p=1.5"), ("top_p",)),
        ("no-such-gpu", "sample", (M, "device=cuda:99"), ("cuda:99",)),
        ("unknown-split", "evaluate", (M, C, "data.split=nope"), ("data.split", "nope")),
        ("batch_size-zero", "evaluate", (M, C, "batch_size=0"), ("batch_size",)),
        # damaged or wrong checkpoints: one line, never a hint to unpickle anything
        (
            "checkpoint-folder-empty",
            "sample",
            ("checkpoint={root}/nodocs",),
            ("nodocs", "not a text checkpoint"),
        ),
        (
            "checkpoint-is-a-text-file",
            "sample",
            ("checkpoint={corpus}",),
            ("corpus.txt", "not a text checkpoint"),
        ),
        ("truncated-safetensors", "sample", ("checkpoint={truncated}",), ("model.safetensors",)),
        ("text-as-safetensors", "sample", ("checkpoint={notweights}",), ("model.safetensors",)),
        ("broken-config-json", "sample", ("checkpoint={badconfig}",), ("config.json",)),
        ("reference-not-ar", "evaluate", (M, C, "reference={model}"), ("reference", "not ar")),
    ]


CASES = _cases()


@pytest.mark.parametrize(("verb", "args", "needles"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_bad_input_is_one_line(files, bad_input, verb, args, needles):
    bad_input("text", verb, args, needles, files)


def test_an_output_folder_under_a_regular_file_is_refused(files, refused):
    out = files["file"] / "run"
    argv = ["text", "sample", f"checkpoint={files['model']}", "n=1", "steps=2",
            f"hydra.run.dir={out}"]  # fmt: skip
    refused(
        lambda: console(argv),
        "polydiff text sample",
        ("hydra.run.dir", "is a file, not a folder"),
        out,
    )
    assert files["file"].read_text() == "a regular file"


def test_the_model_still_samples(files, tmp_path):
    """The fixture's model is sound: the refusals above are about the damage, not the model."""
    out = tmp_path / "ok"
    argv = ["text", "sample", f"checkpoint={files['model']}", "n=1", "steps=2"]
    assert console([*argv, f"hydra.run.dir={out}"]) == 0
    assert len(json.loads((out / "samples.json").read_text())["samples"]) == 1
