"""The code blocks of docs/architecture.md run as written (the docs stay true to the code)."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def test_architecture_has_a_worked_example():
    assert any("register_method" in b and "sample(" in b for b in BLOCKS)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_architecture_code_block_runs(index, monkeypatch):
    module = types.ModuleType(f"docs_architecture_block_{index}")  # dataclasses look it up
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(BLOCKS[index], f"{DOC.name} block {index}", "exec"), module.__dict__)
