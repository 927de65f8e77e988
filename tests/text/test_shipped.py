"""The checkpoint shipped with polydiff-text loads, matches the default config and samples."""

import json

import torch

from polydiff.text.method import load_method, shipped_checkpoint


def test_shipped_checkpoint_loads_and_continues_a_prompt():
    folder = shipped_checkpoint()
    method = load_method(folder)
    assert method.name == "mdlm"
    assert method.tokenizer.vocab_size == 260  # the byte tokenizer of the default config
    n_params = sum(p.numel() for p in method.net.parameters())
    readme = (folder / "README.md").read_text()
    assert f"{n_params:,}" in readme  # the card describes these weights
    assert "polydiff text train" in readme  # with the command that made them
    assert json.loads((folder / "config.json").read_text())["method"] == "mdlm"
    seed = torch.Generator().manual_seed(0)
    out = method.sample(2, 48, steps=16, prompt="ROMEO:", generator=seed)
    assert out.tokens.shape == (2, 48)
    assert all(text.startswith("ROMEO:") for text in method.decode(out.tokens))


def test_shipped_reference_is_an_ar_model_of_the_same_size_and_tokenizer():
    from polydiff.text.method import shipped_reference

    mdlm, ref = load_method(shipped_checkpoint()), load_method(shipped_reference())
    assert ref.name == "ar"
    assert ref.tokenizer.fingerprint() == mdlm.tokenizer.fingerprint()
    n_params = sum(p.numel() for p in ref.net.parameters())
    assert n_params == sum(p.numel() for p in mdlm.net.parameters())
    readme = (shipped_reference() / "README.md").read_text()
    assert f"{n_params:,}" in readme and "data.split=reference" in readme
    # trained: far below the uniform perplexity (260) on text it never saw; KV-cached sampling
    # continues a prompt
    text = "ROMEO:\nBut soft, what light through yonder window breaks?\n" * 2
    ids = torch.tensor([[ref.tokenizer.bos_id, *ref.tokenizer.encode(text)]])
    assert ref.perplexity([ids]) < 12
    out = ref.sample(2, 24, prompt="ROMEO:", generator=torch.Generator().manual_seed(0))
    assert all(t.startswith("ROMEO:") for t in ref.decode(out.tokens))
