"""The examples of docs/motion.md run as written (the training loop shortened to 2 steps)."""

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "motion.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_docs_example_runs(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = BLOCKS[index].replace("range(200)", "range(2)")
    exec(compile(code, f"docs/motion.md block {index}", "exec"), {})
