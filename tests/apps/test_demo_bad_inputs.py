"""Bad input to `polydiff demo`: one line naming the option, exit 2, no stage started (issue 14).
Every case is refused while the options are checked, so the matrix runs in seconds."""

from __future__ import annotations

from pathlib import Path

import pytest

CASES = [
    ("unknown-domain", ("domains=[core,nope]",), ("domains", "nope")),
    ("unknown-domain-as-a-word", ("domains=nope",), ("domains", "nope")),
    ("empty-domains", ("domains=[]",), ("domains", "non-empty")),
    ("domains-a-number", ("domains=5",), ("domains", "5")),
    ("quick-not-a-boolean", ("quick=maybe",), ("quick", "maybe")),
    ("overrides-not-a-list", ("domains=[core]", "overrides.core=5"), ("overrides.core", "list")),
    ("override-that-does-not-parse", ("domains=[core]", "overrides.core=[nonsense]"),
     ("overrides.core", "nonsense")),
    ("override-of-an-unknown-key", ("domains=[core]", 'overrides.core=["nope=1"]'),
     ("overrides.core", "nope")),
    ("run-folder-under-a-file", ("domains=[core]", "hydra.run.dir={root}/file/run"),
     ("hydra.run.dir", "is a file, not a folder")),
]  # fmt: skip


@pytest.mark.parametrize(("args", "needles"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_demo_option_is_one_line(refused, tmp_path: Path, args, needles):
    from polydiff.apps.cli import console

    root = tmp_path / "inputs"
    root.mkdir()
    (root / "file").write_text("a regular file")
    argv = [a.format(root=root) for a in args]
    out = tmp_path / "run"
    if not any(a.startswith("hydra.run.dir=") for a in argv):
        argv.append(f"hydra.run.dir={out}")
    title = "polydiff demo" if "nope=1" not in args[-1] and "overrides.nope" not in args[0] else ""
    line = refused(
        lambda: console(["demo", "quick=true", *argv]), title or "polydiff demo", needles, out
    )
    assert sorted(p.name for p in root.iterdir()) == ["file"]
    assert not (out / "report.md").exists(), line
