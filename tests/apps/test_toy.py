"""Pieces of the core demo stage: toy data and the network."""

from __future__ import annotations

import pytest
import torch

from polydiff.apps.toy2d import DATASETS, ToyMLP, make_data


def test_toy_distributions():
    ring = make_data("eight_gaussians", 4000, 0)
    assert ring.norm(dim=1).mean().item() == pytest.approx(2.0, abs=0.02)
    board = make_data("checkerboard", 4000, 0)
    cell = torch.floor(board + 2.0)
    assert ((cell[:, 0] + cell[:, 1]) % 2 == 0).all() and board.abs().max() <= 2.0
    moons = make_data("moons", 4000, 0)
    assert moons.mean(0).abs().max() < 0.15  # centred
    for name in DATASETS:
        assert make_data(name, 10, 3).equal(make_data(name, 10, 3))
        assert make_data(name, 10, 3).shape == (10, 2)
    with pytest.raises(ValueError, match=r"data\.name"):
        make_data("spiral", 10, 0)


def test_mlp_accepts_shared_or_per_sample_time():
    net = ToyMLP(hidden=16, depth=2)
    x = torch.randn(5, 2)
    t = torch.full((5,), 0.3)
    assert net(x, t).shape == (5, 2)
    assert torch.allclose(net(x, torch.tensor(0.3)), net(x, t))


def test_the_core_demo_is_seeded_and_repeats_exactly(tmp_path, monkeypatch, capsys):
    """Two runs of one command (in one process) train the same weights and score the same SWD:
    the initialisation follows `seed` too (issue 14 item 7)."""
    import json

    from polydiff.apps.cli import dispatch
    from polydiff.core.io import load_safetensors

    monkeypatch.chdir(tmp_path)
    tiny = ["train.steps=6", "data.n_train=64", "data.n_eval=64", "sample.nfe=[2]",
            "sample.solvers=[ddim]", "net.hidden=16", "trainer.accelerator=cpu"]  # fmt: skip
    for name in ("a", "b"):
        assert dispatch(["core", "toy", *tiny, f"hydra.run.dir={name}"]) == 0
    assert "best SWD @NFE 2: ddim " in capsys.readouterr().out  # the headline, on the console
    runs = [tmp_path / name for name in ("a", "b")]
    first, second = (load_safetensors(r / "model" / "model.safetensors") for r in runs)
    assert all(torch.equal(first[k], second[k]) for k in first)
    swd = [json.loads((r / "metrics.json").read_text())["swd"] for r in runs]
    assert swd[0] == swd[1]


def test_diverged_cells_are_flagged_in_the_table_and_the_headline():
    """A sample set farther from the data than the prior noise (Heun at 5 NFE scored 114 and
    drew an empty panel, unmentioned) is called diverged, with the NFE actually spent."""
    from omegaconf import OmegaConf

    from polydiff.apps.toy2d import _markdown, diverged

    assert diverged(114.0, 0.9) and diverged(float("nan"), 0.9) and not diverged(0.2, 0.9)
    cfg = OmegaConf.create({
        "net": {"depth": 3, "hidden": 128}, "prediction": "eps", "path": "vp",
        "data": {"name": "moons", "n_eval": 100}, "swd": {"projections": 64},
        "sample": {"solvers": ["ddim", "heun"], "nfe": [5]},
    })  # fmt: skip
    swd = {("ddim", 5): 0.1, ("heun", 5): 114.0}
    spent = {("ddim", 5): 5, ("heun", 5): 4}
    info = {"steps": 10, "final_loss": 0.5, "seconds": 1.0}
    text = _markdown(cfg, swd, (0.01, 0.001), 0.9, spent, info)
    assert "114.0000 (4) diverged" in text
    assert "**Diverged** (worse than the prior noise): heun at NFE 4 (SWD 114)." in text
    assert "ddim at NFE" not in text
