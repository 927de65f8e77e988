"""End-to-end tests of `polydiff <domain> <verb>`: help, errors, --cfg job, multirun."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from polydiff.apps import registry
from polydiff.apps.registry import DOMAINS


def test_top_help_lists_domains_with_descriptions_and_demo(polydiff):
    out = polydiff("--help")
    assert out.returncode == 0, out.stderr
    for domain in DOMAINS:
        line = next(ln for ln in out.stdout.splitlines() if ln.strip().startswith(f"{domain} "))
        assert registry.domain_summary(domain) in line
    assert any(ln.strip().startswith("demo ") for ln in out.stdout.splitlines())


def test_domain_help_lists_verbs(polydiff):
    out = polydiff("core", "--help")
    assert out.returncode == 0, out.stderr
    for name, verb in registry.verbs("core").items():
        assert f"{name}  " in out.stdout and verb.summary in out.stdout
    # every domain has verbs now, and its help lists each with its summary
    from polydiff.apps.cli import domain_help

    for domain in DOMAINS:
        verbs = registry.verbs(domain)
        assert verbs, f"{domain} has no verbs"
        text = domain_help(domain)
        assert all(v.summary in text for v in verbs.values()), domain


def test_verb_help_shows_defaults_and_yaml_comments(polydiff):
    out = polydiff("core", "toy", "--help")
    assert out.returncode == 0, out.stderr
    assert "train.steps=3000" in out.stdout
    assert "optimizer steps" in out.stdout  # the YAML comment of train.steps
    assert "sample.solvers=[ddim, " in out.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("nodomain",), "unknown domain 'nodomain'"),
        (("core", "noverb"), "unknown verb 'noverb'"),
        (("pde", "nosuchverb"), "unknown verb 'nosuchverb' for domain pde"),
        (("core", "data", "nokey=1"), "unknown option 'nokey'"),
        (("core", "data", "data.nokey=1"), "unknown option 'data.nokey'"),
        (("core", "data", "data.n=[1"), "malformed override 'data.n=[1'"),
        (("core", "data", "data.n"), "malformed override 'data.n'"),
        (("core", "data", "--no-such-flag"), "--no-such-flag"),
        (("core", "data", "-m", "data.n=5,6", "nokey=1"), "unknown option 'nokey'"),
        (("core", "data", "hydra.nokey=1"), "unknown option 'hydra.nokey'"),
        (("core", "data", "-m", "seed=0,1", "--cfg", "job"), "only one of"),
        (("core", "data", "seed=0,1"), "Ambiguous value"),
        (("core", "data", "-m", "seed=interval(0,1)"), "interval sweeps need a sweeper"),
        (("demo", "domains=[nodomain]"), "nodomain"),
        (("demo", 'overrides.core=["nokey=1"]'), "overrides.core"),
    ],
)
def test_usage_errors_are_one_line_exit_2(polydiff, tmp_path: Path, args, needle):
    out = polydiff(*args)
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("polydiff: error:") and needle in lines[0], lines[0]
    assert "Traceback" not in out.stderr + out.stdout
    assert not (tmp_path / "runs").exists(), "a rejected command must not create a run"


def test_bad_value_found_by_the_verb_is_one_line_exit_2(polydiff):
    out = polydiff("core", "data", "data.name=nope")
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "unknown toy distribution 'nope'" in out.stderr


def test_cfg_job_prints_resolved_config_and_runs_nothing(polydiff, tmp_path: Path):
    out = polydiff("core", "toy", "--cfg", "job", "train.steps=7", "sample.nfe=[3,6]")
    assert out.returncode == 0, out.stderr
    cfg = yaml.safe_load(out.stdout)
    assert cfg["train"]["steps"] == 7 and cfg["sample"]["nfe"] == [3, 6]
    assert "hydra" not in cfg
    assert not (tmp_path / "runs").exists()


def test_run_goes_to_runs_domain_verb_timestamp(polydiff, tmp_path: Path):
    out = polydiff("core", "data", "data.n=64", "seed=3")
    assert out.returncode == 0, out.stderr
    (run,) = (tmp_path / "runs" / "core" / "data").iterdir()
    assert (run / "data.png").is_file() and (run / "data.safetensors").is_file()
    assert yaml.safe_load((run / ".hydra" / "config.yaml").read_text())["seed"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]  # nothing else in the cwd


def test_multirun_two_values_make_two_runs(polydiff, tmp_path: Path):
    from polydiff.core.io import load_safetensors

    out = polydiff("core", "data", "-m", "data.name=moons,checkerboard", "data.n=32")
    assert out.returncode == 0, out.stderr
    (sweep,) = (tmp_path / "runs" / "core" / "data").iterdir()
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [p.name for p in jobs] == ["0", "1"]
    names = [
        yaml.safe_load((j / ".hydra" / "config.yaml").read_text())["data"]["name"] for j in jobs
    ]
    assert names == ["moons", "checkerboard"]
    x0, x1 = (load_safetensors(j / "data.safetensors")["x"] for j in jobs)
    assert x0.shape == x1.shape == (32, 2) and not x0.equal(x1)
