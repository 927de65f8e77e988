"""The code blocks of docs/pde.md run as written (the docs stay true to the code)."""

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "pde.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def test_the_guide_has_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_guide_code_block_runs(index, tmp_path):
    exec(compile(BLOCKS[index], f"{DOC.name} block {index}", "exec"), {"tmp": tmp_path})
