"""`polydiff demo`: stage isolation, the report, and the quick end-to-end run of the core stage."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from helpers import check_demo_report
from omegaconf import OmegaConf

from polydiff.apps import demo
from polydiff.apps.registry import ConfigError, DemoStage, StageResult, Verb, demo_stages
from polydiff.core.io import load_safetensors


def _cfg(**kw):
    return OmegaConf.create({"domains": None, "quick": False, "overrides": {}, **kw})


def test_a_crashing_stage_is_reported_and_the_others_still_run(tmp_path: Path, monkeypatch):
    def crash(cfg, run_dir):
        raise RuntimeError("boom in motion")

    def ok(cfg, run_dir):
        plot = run_dir / "plot.png"
        plot.write_bytes(b"\x89PNG")
        return StageResult({"score": 0.5}, "all good", [("a plot", plot)], {"score": 0.5})

    stages = {
        "core": DemoStage(Verb("core", "toy", ok)),
        "motion": DemoStage(Verb("motion", "toy", crash)),
        "pde": DemoStage(Verb("pde", "toy", ok)),
    }
    monkeypatch.setattr(demo, "demo_stages", lambda: stages)
    monkeypatch.setattr(demo, "compose_config", lambda name, overrides=(): OmegaConf.create({}))

    code = demo.run_demo(_cfg(), tmp_path)

    assert code == 1
    report = (tmp_path / "report.md").read_text()
    assert re.search(r"^\| core \| ok \|.*score = 0\.5", report, re.M)
    assert re.search(r"^\| motion \| FAILED \|.*boom in motion", report, re.M)
    assert re.search(r"^\| pde \| ok \|", report, re.M)
    assert "![a plot](core/plot.png)" in report and "![a plot](pde/plot.png)" in report
    assert "Traceback" in (tmp_path / "motion" / "error.txt").read_text()
    # the report names the domains that have no demo stage (here: all but the three above)
    assert "No demo stage yet: text, policy, speech, medical, crystal." in report
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert {d: v["status"] for d, v in summary["domains"].items()} == {
        "core": "ok",
        "motion": "failed",
        "pde": "ok",
    }


def test_select_stages():
    registered = demo_stages()
    assert "core" in registered
    assert [s.domain for s in demo.select_stages("core")] == ["core"]
    assert [s.domain for s in demo.select_stages(None)] == list(registered)
    with pytest.raises(ConfigError, match="unknown domain"):
        demo.select_stages(["nope"])


def test_quick_demo_end_to_end(polydiff, tmp_path: Path):
    out = polydiff("demo", "domains=[core]", "quick=true")
    assert out.returncode == 0, out.stderr[-3000:]
    (run,) = (tmp_path / "runs" / "demo").iterdir()
    check_demo_report(run, "core", ["core/samples.png"])
    assert "No demo stage yet" not in (run / "report.md").read_text()  # every domain has one

    metrics = json.loads((run / "core" / "metrics.json").read_text())
    solvers = ["ddim", "dpmpp_2m", "unipc", "euler", "heun", "sde_dpmpp_2m"]
    assert list(metrics["swd"]) == solvers and all(
        list(v) == ["4", "8"] for v in metrics["swd"].values()
    )
    assert 0 < metrics["swd_floor"] < metrics["swd_prior"]
    # 400 quick training steps already halve the distance of the prior noise to the data.
    best = min(v["8"] for v in metrics["swd"].values())
    assert best < 0.5 * metrics["swd_prior"], metrics
    # DDIM and Euler in EDM's sigma space are the same update (Karras et al. 2022).
    assert abs(metrics["swd"]["ddim"]["8"] - metrics["swd"]["euler"]["8"]) < 1e-3
    weights = load_safetensors(run / "core" / "model" / "model.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())
    assert json.loads((run / "core" / "model" / "config.json").read_text())["hidden"] == 128


def test_demo_stage_crash_through_the_cli_exits_1_with_report(polydiff, tmp_path: Path):
    out = polydiff("demo", "quick=true", 'overrides.core=["data.name=nope"]')
    assert out.returncode == 1
    (run,) = (tmp_path / "runs" / "demo").iterdir()
    report = (run / "report.md").read_text()
    assert re.search(r"^\| core \| FAILED \|.*unknown toy distribution 'nope'", report, re.M)
