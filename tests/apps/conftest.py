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
