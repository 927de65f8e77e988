"""End-to-end runs of `polydiff text data|train|sample|evaluate` on a tiny corpus and model.

The verbs run in-process through `polydiff.apps.cli.dispatch` (the console script minus
`sys.exit`), so Lightning is imported once; one test runs the installed console script.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch
from helpers import check_demo_report

from polydiff.apps.cli import dispatch

SEQ_LEN = 32
TINY_MODEL = (
    f"data.seq_len={SEQ_LEN}",
    "model.d_model=32",
    "model.n_layers=1",
    "model.n_heads=2",
    "train.steps=3",
    "train.batch_size=8",
    "train.warmup=1",
    "train.val_rows=8",
    "trainer.accelerator=cpu",
    "trainer.devices=1",
)


def _corpus(folder: Path) -> Path:
    """30 JSON Lines documents of 12 lines of random words (~16 kB)."""
    rng = random.Random(0)
    words = "the king queen lord love night day sword crown heart fair sweet death life".split()
    path = folder / "corpus.jsonl"
    with path.open("w") as f:
        for _ in range(30):
            lines = (" ".join(rng.choice(words) for _ in range(8)) for _ in range(12))
            f.write(json.dumps({"text": "\n".join(lines)}) + "\n")
    return path


def _run(*args: str) -> int:
    return dispatch(["text", *args])


def _error(capsys, *args: str) -> str:
    """Run a verb that must fail with a usage error: exit 2 and one line on stderr."""
    capsys.readouterr()
    assert _run(*args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("polydiff: error: polydiff text"), err
    return err[0]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """data -> mdlm, blockgen, udlm and an AR reference (on the disjoint reference split)."""
    root = tmp_path_factory.mktemp("text_cli")
    corpus = _corpus(root)
    src = f"data.source={corpus}"
    out = {"root": root, "corpus": corpus}
    assert _run("data", src, f"data.seq_len={SEQ_LEN}", f"hydra.run.dir={root / 'data'}") == 0
    common = (src, f"data.prepared={root / 'data'}", *TINY_MODEL)
    for name, extra in [
        ("mdlm", ()),
        ("blockgen", ("method=blockgen", "blockgen.block_sizes=[1,8]")),
        ("udlm", ("method=udlm",)),
        ("reference", ("method=ar", "data.split=reference")),
    ]:
        assert _run("train", *common, *extra, f"hydra.run.dir={root / name}") == 0
        out[name] = root / name
    out["data"] = root / "data"
    return out


def test_data_packs_and_caches_the_splits(runs):
    from polydiff.core.io import load_safetensors
    from polydiff.text.data import ByteTokenizer, prepare_corpus

    summary = json.loads((runs["data"] / "data.json").read_text())
    assert summary["tokenizer"] == {"kind": "byte", "vocab_size": 260}
    expected = prepare_corpus(runs["corpus"], ByteTokenizer(), SEQ_LEN, seed=0)
    cache = load_safetensors(runs["data"] / "cache" / summary["cache"][0])
    for name in ("train", "reference", "validation"):
        assert summary["splits"][name] == list(expected[name].shape)
        assert cache[name].equal(expected[name])
    assert (runs["data"] / "tokenizer" / "tokenizer_config.json").is_file()


def test_train_exports_loadable_checkpoints(runs):
    from polydiff.text.method import load_method

    names = [("mdlm", "mdlm"), ("blockgen", "blockgen"), ("udlm", "udlm"), ("reference", "ar")]
    for name, method in names:
        metrics = json.loads((runs[name] / "metrics.json").read_text())
        model = load_method(runs[name] / "train" / "export")
        assert model.name == method == metrics["method"]
        assert metrics["parameters"] == sum(p.numel() for p in model.net.parameters())
        assert model.config.transformer.max_seq_len == SEQ_LEN
        # every run reports the unigram baseline its perplexity must beat
        assert 1 < metrics["validation_unigram_ppl"] < 260
    assert model.config.transformer.d_model == 32
    # UDLM needs the time: its default time_conditioning=none becomes adaLN
    assert load_method(runs["udlm"] / "train" / "export").config.transformer.time_conditioning == (
        "adaln"
    )
    assert load_method(runs["blockgen"] / "train" / "export").config.block_sizes == {
        1: 0.05,
        8: 0.95,
    }
    # the seed fixes the initialisation too: the same command trains the same model
    again = runs["root"] / "mdlm_again"
    args = (f"data.source={runs['corpus']}", f"data.prepared={runs['data']}", *TINY_MODEL)
    assert _run("train", *args, f"hydra.run.dir={again}") == 0
    first = load_method(runs["mdlm"] / "train" / "export").net.state_dict()
    second = load_method(again / "train" / "export").net.state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_sample_without_checkpoint_uses_the_shipped_model(tmp_path):
    out = tmp_path / "shipped"
    assert _run("sample", "prompt=ROMEO:", "n=2", "steps=8", f"hydra.run.dir={out}") == 0
    record = json.loads((out / "samples.json").read_text())
    assert record["method"] == "mdlm" and "shakespeare-mdlm" in record["checkpoint"]
    assert len(record["samples"]) == 2 and all(s.startswith("ROMEO:") for s in record["samples"])


def test_sampling_shows_its_steps_on_a_terminal(tmp_path, capsys, monkeypatch):
    """The CLI's bar (forced on: the test's stderr is no terminal) counts the sampler's steps."""
    import functools

    import polydiff.apps.cli as cli
    from polydiff.core.progress import progress_bar

    monkeypatch.setattr(cli, "progress_bar", functools.partial(progress_bar, delay=0, refresh=0,
                                                               enabled=True))  # fmt: skip
    assert _run("sample", "n=1", "steps=6", f"hydra.run.dir={tmp_path}") == 0
    err = capsys.readouterr().err
    assert "sampling: 100%" in err and "6/6" in err, err[-2000:]


def test_sample_with_unsupervised_cfg_guides_towards_the_prompt(tmp_path):
    texts = {}
    for w in (0, 2):
        out = tmp_path / f"cfg{w}"
        args = ("prompt=ROMEO:", "n=2", "steps=8", f"cfg_scale={w}", f"hydra.run.dir={out}")
        assert _run("sample", *args) == 0
        texts[w] = json.loads((out / "samples.json").read_text())["samples"]
        assert all(s.startswith("ROMEO:") for s in texts[w])
    assert texts[0] != texts[2]  # same seed: only the guidance differs


def test_sample_continues_the_prompt_and_writes_the_text(runs, capsys):
    out = runs["root"] / "sample"
    capsys.readouterr()
    args = ("prompt=the king", "n=3", "steps=8", "seed=1")
    assert _run("sample", f"checkpoint={runs['mdlm']}", *args, f"hydra.run.dir={out}") == 0
    printed = capsys.readouterr().out
    record = json.loads((out / "samples.json").read_text())
    assert record["method"] == "mdlm" and len(record["samples"]) == 3
    assert all(s.startswith("the king") for s in record["samples"])
    assert all(s in printed for s in record["samples"])
    written = (out / "samples.txt").read_bytes().decode()  # no newline translation of a "\r"
    assert written == "".join(f"{s}\n\n" for s in record["samples"])
    again = runs["root"] / "sample_again"  # same seed: same text
    assert _run("sample", f"checkpoint={runs['mdlm']}", *args, f"hydra.run.dir={again}") == 0
    assert json.loads((again / "samples.json").read_text())["samples"] == record["samples"]
    # block diffusion with ARPC, uniform diffusion, the AR baseline (one call per new token)
    for name, extra in [("blockgen", ("arpc=true",)), ("udlm", ()), ("reference", ())]:
        folder = runs["root"] / f"sample_{name}"
        assert _run("sample", f"checkpoint={runs[name]}", *args, *extra,
                    f"hydra.run.dir={folder}") == 0  # fmt: skip
        record = json.loads((folder / "samples.json").read_text())
        assert all(s.startswith("the king") for s in record["samples"])
    prompt_tokens = 1 + len("the king")
    assert record["network_calls"] == SEQ_LEN - prompt_tokens


def test_evaluate_reproduces_the_bound_and_scores_samples(runs):
    from polydiff.text.data import prepare_corpus
    from polydiff.text.method import load_method

    out = runs["root"] / "evaluate"
    assert _run(
        "evaluate", f"checkpoint={runs['mdlm']}", f"reference={runs['reference']}",
        f"data.source={runs['corpus']}", "sample.n=4", "sample.steps=8",
        "sample.temperatures=[0.8,1.0]", f"hydra.run.dir={out}",
    ) == 0  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    mdlm = load_method(runs["mdlm"] / "train" / "export")
    val = prepare_corpus(runs["corpus"], mdlm.tokenizer, SEQ_LEN, seed=0)["validation"]
    torch.manual_seed(0)
    assert metrics["ppl_bound"] == pytest.approx(mdlm.perplexity_bound(val.split(32)), rel=1e-9)
    assert metrics["rows"] == val.shape[0]
    points = metrics["samples"]
    assert [p["temperature"] for p in points] == [0.8, 1.0]
    for p in points:  # entropy of at most SEQ_LEN distinct tokens; gen-PPL above 1
        assert 0 < p["entropy"] <= torch.log(torch.tensor(float(SEQ_LEN))) and p["gen_ppl"] > 1
    assert (out / "frontier.png").stat().st_size > 1000
    # the AR model gets its exact perplexity
    ar_out = runs["root"] / "evaluate_ar"
    assert _run("evaluate", f"checkpoint={runs['reference']}", f"data.source={runs['corpus']}",
                f"hydra.run.dir={ar_out}") == 0  # fmt: skip
    ar = load_method(runs["reference"] / "train" / "export")
    exact = json.loads((ar_out / "metrics.json").read_text())["ppl"]
    assert exact == pytest.approx(ar.perplexity(val.split(32)), rel=1e-9)


def test_evaluate_with_the_shipped_reference(runs):
    out = runs["root"] / "evaluate_shipped"
    assert _run(
        "evaluate", f"checkpoint={runs['mdlm']}", "reference=shipped",
        f"data.source={runs['corpus']}", "sample.n=2", "sample.steps=4", f"hydra.run.dir={out}",
    ) == 0  # fmt: skip
    (point,) = json.loads((out / "metrics.json").read_text())["samples"]
    assert point["gen_ppl"] > 1 and point["entropy"] > 0


def test_bad_inputs_are_one_line_errors(runs, tmp_path: Path, capsys):
    empty, binary = tmp_path / "empty.txt", tmp_path / "binary.txt"
    empty.write_text("  \n")
    binary.write_bytes(b"\x00\x01\x02 not text")
    run = f"hydra.run.dir={tmp_path / 'run'}"
    # data
    assert "empty.txt" in _error(capsys, "data", f"data.source={empty}", run)
    assert "binary.txt" in _error(capsys, "data", f"data.source={binary}", run)
    assert "tokenizer.kind" in _error(capsys, "data", "tokenizer.kind=wordpiece", run)
    # train
    corpus = f"data.source={runs['corpus']}"
    assert "method must be one of" in _error(capsys, "train", "method=gpt", run)
    msg = _error(capsys, "train", corpus, "data.seq_len=100000", run)
    assert "too small" in msg or "split" in msg
    assert "divisible" in _error(capsys, "train", corpus, "model.n_heads=5", run)
    # sample
    msg = _error(capsys, "sample", f"prompt={'x' * 200}", run)  # the shipped model: 128 tokens
    assert "longer than the context" in msg
    msg = _error(capsys, "sample", f"checkpoint={runs['mdlm']}", f"prompt={'x' * 40}", run)
    assert "longer than the context" in msg
    assert "not a text checkpoint" in _error(capsys, "sample", f"checkpoint={tmp_path}", run)
    assert "top_p" in _error(capsys, "sample", f"checkpoint={runs['mdlm']}", "top_p=0", run)
    assert "cfg_scale" in _error(capsys, "sample", "prompt=A", "cfg_scale=-1", run)
    assert "length must be a positive" in _error(capsys, "sample", "length=-3", run)
    assert "device='cuda:99'" in _error(capsys, "sample", "device=cuda:99", run)  # no such GPU
    assert "does not sample a MaskedDiffusion" in _error(capsys, "sample", "solver=euler", run)
    # evaluate
    msg = _error(capsys, "evaluate", f"checkpoint={runs['mdlm']}", f"reference={runs['mdlm']}",
                 corpus, run)  # fmt: skip
    assert "not ar" in msg


def test_console_script_data_and_usage_error(polydiff, tmp_path: Path):
    corpus = _corpus(tmp_path)
    out = polydiff("text", "data", f"data.source={corpus}", "data.seq_len=16",
                   "hydra.run.dir=d")  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "d" / "data.json").read_text())["seq_len"] == 16
    bad = polydiff("text", "data", f"data.source={tmp_path / 'missing.txt'}", "hydra.run.dir=e")
    assert bad.returncode == 2 and "missing.txt" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr


def test_quick_demo_stage_end_to_end(polydiff, tmp_path: Path):
    """`polydiff demo domains=[text] quick=true`: shipped MDLM scored by the shipped reference."""
    from polydiff.text.data import prepare_corpus
    from polydiff.text.method import load_method, shipped_checkpoint, shipped_reference

    out = polydiff("demo", "domains=[text]", "quick=true")
    assert out.returncode == 0, out.stderr[-3000:]
    (run,) = (tmp_path / "runs" / "demo").iterdir()
    report = check_demo_report(run, "text", ["text/frontier.png"], row=".*PPL bound")
    assert "ROMEO:" in report  # a sample is shown in the summary
    metrics = json.loads((run / "text" / "metrics.json").read_text())
    # the quick overrides: 16 held-out rows, samples of 48 tokens, two samplers
    assert list(metrics["samplers"]) == ["mdlm_cached", "remdm"]
    assert [p["temperature"] for p in metrics["frontier"]["mdlm_cached"]] == [0.9, 1.0]
    for s in metrics["samplers"].values():  # 48 tokens hold at most 48 distinct symbols
        assert 0 < s["entropy"] <= math.log(48) and 1 < s["gen_ppl"] < 100, s
    texts = (run / "text" / "samples" / "remdm.txt").read_text()
    assert texts.startswith("ROMEO:")
    # the numbers are those of the shipped models on the first 16 validation rows
    mdlm, ref = load_method(shipped_checkpoint()), load_method(shipped_reference())
    val = prepare_corpus("builtin:shakespeare", mdlm.tokenizer, 128, seed=0)["validation"][:16]
    torch.manual_seed(0)
    held = metrics["held_out"]
    assert held["rows"] == 16
    assert held["ppl_bound"] == pytest.approx(mdlm.perplexity_bound(val.split(32)), rel=1e-9)
    assert held["reference_ppl"] == pytest.approx(ref.perplexity(val.split(32)), rel=1e-9)
    assert held["reference_ppl"] < held["ppl_bound"] < 20  # an exact PPL below a bound


def test_the_readme_train_quick_start_beats_the_unigram_baseline(tmp_path):
    """README's `polydiff text train method=mdlm data.source=...` at reduced size (200 steps of a
    64-wide model on the built-in Shakespeare) already beats the unigram model of its training
    text by several standard errors (issue 14 item 6: defaults that work, said in numbers)."""
    run = tmp_path / "quick_start"
    assert _run("train", "method=mdlm", "data.source=builtin:shakespeare", "train.steps=200",
                "model.d_model=64", "model.n_layers=2", "train.val_rows=64",
                f"hydra.run.dir={run}") == 0  # fmt: skip
    m = json.loads((run / "metrics.json").read_text())
    assert (
        m["validation_ppl_bound"] + 3 * m["validation_ppl_bound_se"] < m["validation_unigram_ppl"]
    )
