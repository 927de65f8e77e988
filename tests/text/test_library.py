"""The text library as a Python user (and the CLI / benchmarks) calls it: methods by name, one
sampling calling convention, perplexity exact or bound by model, gen-PPL scoring, data folders,
old checkpoints, and the package shape (method.py imports no method, no private imports)."""

from __future__ import annotations

import ast
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from polydiff.core.method import list_methods
from polydiff.text.data import BPETokenizer, ByteTokenizer, prepare_corpus, prepare_data
from polydiff.text.evaluation import check_reference, score_samples
from polydiff.text.method import (
    load_method,
    new_method,
    shipped_checkpoint,
    shipped_reference,
    upgrade_checkpoint,
)
from polydiff.text.metrics import generative_perplexity, unigram_entropy
from polydiff.text.sampling import SampleResult

TOK = ByteTokenizer()
NET = {"d_model": 32, "n_layers": 1, "n_heads": 2}
PACKAGE = Path(__file__).parents[2] / "packages" / "text" / "src" / "polydiff" / "text"


def test_methods_by_name_with_their_rules():
    assert list_methods("text") == ["ar", "blockgen", "mdlm", "udlm"]
    # uniform noise hides how many tokens are corrupted: UDLM's "none" becomes adaLN
    assert new_method("udlm", TOK, 16, NET).config.transformer.time_conditioning == "adaln"
    assert new_method("mdlm", TOK, 16, NET).config.transformer.time_conditioning == "none"
    block = new_method("blockgen", TOK, 16, NET, block_sizes=[1, 8], weights=[0.1, 0.9])
    assert block.config.block_sizes == {1: 0.1, 8: 0.9} and block.config.sample_block_size == 8
    with pytest.raises(ValueError, match="multiple of the largest block size 8"):
        new_method("blockgen", TOK, 12, NET, block_sizes={1: 0.5, 8: 0.5})
    with pytest.raises(ValueError, match="equal, nonzero length"):
        new_method("blockgen", TOK, 16, NET, block_sizes=[1, 8], weights=[1.0])
    with pytest.raises(ValueError, match="unknown text method 'gpt'; known: ar, blockgen"):
        new_method("gpt", TOK, 16, NET)
    with pytest.raises(ValueError, match=r"mdlm: .*block_sizes"):
        new_method("mdlm", TOK, 16, NET, block_sizes=[1])


def test_one_sampling_convention_for_every_method():
    torch.manual_seed(0)
    mdlm, ar = new_method("mdlm", TOK, 16, NET), new_method("ar", TOK, 16, NET)
    assert "cfg_scale" in mdlm.sample_options and "solver" not in ar.sample_options
    with pytest.raises(ValueError, match="ar sampling takes no option solver"):
        ar.sample(1, solver="mdlm")
    # None is the method's default: the same samples as leaving the option out
    a = mdlm.sample(2, steps=4, solver=None, generator=torch.Generator().manual_seed(0))
    b = mdlm.sample(2, steps=4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a.tokens, b.tokens)
    settings = {"n": 3, "steps": 4, "solver": None, "prompt": "", "arpc": True, "top_p": 0.9}
    assert mdlm.pick_sample_options(settings) == {
        "steps": 4, "solver": None, "prompt": None, "top_p": 0.9,
    }  # fmt: skip
    block = new_method("blockgen", TOK, 16, NET, block_sizes={1: 0.5, 8: 0.5})
    assert block.pick_sample_options(settings)["arpc"] is True
    assert set(ar.pick_sample_options(settings)) == {"steps", "prompt", "top_p"}


def test_held_out_perplexity_is_exact_or_a_bound_by_model():
    torch.manual_seed(0)
    rows = torch.randint(0, 256, (4, 16))
    ar, mdlm = new_method("ar", TOK, 16, NET), new_method("mdlm", TOK, 16, NET)
    assert ar.held_out_perplexity(rows.split(2)) == {"ppl": ar.perplexity(rows.split(2))}
    got = mdlm.held_out_perplexity(
        rows.split(2), n_time_samples=2, generator=torch.Generator().manual_seed(1)
    )
    bound, error = mdlm.perplexity_bound_estimate(
        rows.split(2), n_time_samples=2, generator=torch.Generator().manual_seed(1)
    )
    assert got == {"ppl_bound": bound, "ppl_bound_se": error} and error > 0


def test_score_samples_is_gen_ppl_with_its_standard_error_and_entropy():
    torch.manual_seed(0)
    ar = new_method("ar", TOK, 16, NET)
    tokens = torch.randint(0, 256, (5, 12))
    result = SampleResult(tokens, network_calls=3, nfe=3.0, seconds=2.0)
    s = score_samples(result, ar.net, mask_id=TOK.mask_id, ignore_ids=(TOK.pad_id,))
    gp = generative_perplexity(tokens, ar.net, mask_id=TOK.mask_id, ignore_ids=(TOK.pad_id,))
    per_token = gp.nll / gp.n_tokens
    assert s["gen_ppl"] == gp.ppl and s["nfe"] == 3.0 and s["tokens_per_second"] == 30.0
    assert s["log_gen_ppl_se"] == pytest.approx(float(per_token.std()) / math.sqrt(5))
    assert s["entropy"] == pytest.approx(float(unigram_entropy(tokens, (TOK.pad_id,)).mean()))
    one = score_samples(SampleResult(tokens[:1], 1, 1.0, 1.0), ar.net)
    assert math.isnan(one["log_gen_ppl_se"])


def test_a_gen_ppl_reference_is_a_causal_lm_with_the_same_tokenizer():
    mdlm, ar = load_method(shipped_checkpoint()), load_method(shipped_reference())
    assert check_reference(ar, mdlm) is ar
    with pytest.raises(ValueError, match="a mdlm model, not ar"):
        check_reference(mdlm, mdlm)
    bpe = BPETokenizer.train(["to be or not to be, that is the question"] * 20, vocab_size=300)
    with pytest.raises(ValueError, match="another tokenizer"):
        check_reference(new_method("ar", bpe, 16, NET), mdlm)


def test_prepare_data_writes_a_reusable_folder(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(f"document {i}: " + "words " * 40 for i in range(40)))
    _, packed = prepare_data(corpus, 16, tmp_path / "run", seed=3)
    summary = json.loads((tmp_path / "run" / "data.json").read_text())
    assert summary["tokenizer"] == {"kind": "byte", "vocab_size": 260} and summary["seed"] == 3
    assert summary["splits"]["train"] == list(packed["train"].shape)
    assert len(summary["cache"]) == 1 and (tmp_path / "run" / "tokenizer").is_dir()
    expected = prepare_corpus(corpus, ByteTokenizer(), 16, seed=3)
    assert all(packed[k].equal(expected[k]) for k in expected.splits)
    _, again = prepare_data(corpus, 16, tmp_path / "next", prepared=tmp_path / "run", seed=3)
    assert again["validation"].equal(packed["validation"])
    assert not (tmp_path / "next" / "cache").exists()  # the prepared token cache was reused
    with pytest.raises(FileNotFoundError, match=r"no data\.json there"):
        prepare_data(corpus, 16, tmp_path / "x", prepared=tmp_path)


def test_an_old_text_checkpoint_loads_as_it_is_or_upgraded_in_place(tmp_path):
    folder = tmp_path / "old"
    shutil.copytree(shipped_checkpoint(), folder)
    config = json.loads((folder / "config.json").read_text())
    legacy = {"format": "polydiff-text-method", "version": 1, "method": config["method"]}
    legacy.update({k: v for k, v in config.items() if k not in ("format", "version", "domain")})
    (folder / "config.json").write_text(json.dumps(legacy))
    shipped = load_method(shipped_checkpoint())

    def same_as_shipped(method) -> bool:
        a, b = (
            m.sample(2, 32, steps=4, generator=torch.Generator().manual_seed(0)).tokens
            for m in (method, shipped)
        )
        return method.config == shipped.config and torch.equal(a, b)

    assert same_as_shipped(load_method(folder))  # the old layout loads as it is
    upgrade_checkpoint(folder)
    assert json.loads((folder / "config.json").read_text()) == config
    assert same_as_shipped(load_method(folder))
    with pytest.raises(ValueError, match="not a polydiff-text-method checkpoint"):
        upgrade_checkpoint(folder)


def test_method_module_imports_no_method():
    methods = [f"polydiff.text.{m}" for m in ("ar", "mdlm", "udlm", "blockgen", "methods")]
    code = f"import sys, polydiff.text.method; print([m for m in {methods} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_no_module_imports_a_private_name_of_another():
    private = []
    for file in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("polydiff."):
                private += [f"{file.name}: {a.name}" for a in node.names if a.name.startswith("_")]
    assert private == []


def test_configs_serialise_themselves():
    block = new_method("blockgen", TOK, 16, NET, block_sizes={1: 0.25, 8: 0.75}).config
    data = json.loads(json.dumps(block.to_dict()))  # JSON keys are strings
    assert data["block_sizes"] == {"1": 0.25, "8": 0.75}
    again = type(block).from_dict(data)
    assert again == block and again.block_sizes == {1: 0.25, 8: 0.75}
    assert again.transformer.d_model == 32 and again.t_range == (1e-3, 1.0)
    with pytest.raises(ValueError, match=r"saved\.json: unknown BlockGenConfig fields \['typo'\]"):
        type(block).from_dict({**data, "typo": 1}, source="saved.json")
