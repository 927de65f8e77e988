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
