"""Helpers shared by the tests of every distribution (importable as `helpers`)."""

from __future__ import annotations

import subprocess
import sys

DOMAINS = ("text", "motion", "speech", "medical", "crystal", "pde")


def imported_polydiff_modules(module: str) -> set[str]:
    """Top-level polydiff sub-packages loaded by importing `module` in a fresh interpreter."""
    code = (
        f"import sys, {module}; "
        "print(' '.join(sorted({m.split('.')[1] for m in sys.modules "
        "if m.startswith('polydiff.') and m.count('.') >= 1})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())
