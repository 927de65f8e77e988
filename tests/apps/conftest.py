"""Helpers for the end-to-end tests of the `polydiff` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

POLYDIFF = Path(sys.executable).with_name("polydiff")


@pytest.fixture
def polydiff(tmp_path: Path):
    """Run the installed `polydiff` console script in tmp_path; returns the CompletedProcess."""
    assert POLYDIFF.is_file(), f"console script not installed next to {sys.executable}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"}

    def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(POLYDIFF), *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


@pytest.fixture
def refused(capsys, monkeypatch):
    """`refused(run, title, needles, *folders)`: call `run()` (an in-process command that must
    be refused) and check it: exit 2, one `polydiff: error: <title>: ...` line on stderr (library
    notices as `polydiff: warning:` lines aside) naming each of `needles`, and nothing
    half-written in `folders`: no file beyond Hydra's record of the run, no `.*.tmp` file.
    Returns the error line."""
    import warnings

    from polydiff.apps.cli import _one_line_warning

    monkeypatch.setattr(warnings, "formatwarning", _one_line_warning)

    def check(run, title: str, needles: tuple[str, ...], *folders: Path) -> str:
        capsys.readouterr()
        code = run()
        err = capsys.readouterr().err
        lines = [ln for ln in err.strip().splitlines() if not ln.startswith("polydiff: warning:")]
        assert code == 2, err[-3000:]
        assert len(lines) == 1 and lines[0].startswith(f"polydiff: error: {title}: "), err[-3000:]
        assert all(needle in lines[0] for needle in needles), (needles, lines[0])
        for folder in folders:
            if folder.is_dir():
                left = [p for p in folder.rglob("*") if p.is_file() and not _record(p, folder)]
                assert not left, left
            assert not list(folder.parent.glob(".*.tmp")), folder
        return lines[0]

    return check


def _record(path: Path, run_dir: Path) -> bool:
    """Hydra's record of a run (.hydra/*.yaml, *.log), written before the verb starts."""
    rel = path.relative_to(run_dir)
    return rel.parts[0] == ".hydra" or rel.suffix == ".log"


@pytest.fixture
def bad_input(refused, tmp_path: Path):
    """`bad_input(domain, verb, args, needles, files)`: one case of a bad-input matrix. `args`
    get their `{name}` fields from `files` (whose "root" is the folder of the inputs); the command
    runs in-process in a fresh run folder (unless `args` name hydra.run.dir) and must be refused
    as `refused` checks, leaving the inputs' folder as it was (no output, no temporary file)."""
    from polydiff.apps.cli import console

    def check(domain: str, verb: str, args, needles, files: dict[str, Path]) -> str:
        argv = [a.format(**{k: str(v) for k, v in files.items()}) for a in args]
        out = tmp_path / "run"
        if not any(a.startswith("hydra.run.dir=") for a in argv):
            argv.append(f"hydra.run.dir={out}")
        before = sorted(p.name for p in files["root"].iterdir())
        run = lambda: console([domain, verb, *argv])  # noqa: E731
        line = refused(run, f"polydiff {domain} {verb}", needles, out)
        assert "weights_only=False" not in line  # never a hint to unpickle a file
        assert sorted(p.name for p in files["root"].iterdir()) == before
        return line

    return check
