"""The code blocks of docs/crystal.md run as written (the page stays true to the code)."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "crystal.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def test_crystal_page_example_trains_predicts_and_writes_cifs(tmp_path, monkeypatch):
    assert len(BLOCKS) == 1
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(BLOCKS[0], f"{DOC.name} block 0", "exec"), scope)
    assert scope["predicted"].formulas() == ["Li2O1", "Mg1Si1O3"]
    assert sorted(p.name for p in (tmp_path / "runs/crystal/predicted").iterdir()) == [
        "crystal_00000_Li2O1.cif",
        "crystal_00001_Mg1Si1O3.cif",
    ]
    assert (tmp_path / "runs/crystal/model/model.safetensors").is_file()
