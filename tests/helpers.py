"""Helpers shared by the tests of every distribution (importable as `helpers`)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import torch

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


def assert_close(actual, expected, rtol=1e-7, atol=1e-7, msg=""):
    """torch.allclose with a message (torch.testing costs ~10 s of imports on first use)."""
    expected = torch.as_tensor(expected, dtype=actual.dtype, device=actual.device)
    assert actual.shape == expected.shape, (
        f"{msg} shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    )
    err = (actual - expected).abs().max().item() if actual.numel() else 0.0
    assert torch.allclose(actual, expected, rtol=rtol, atol=atol), f"{msg} max abs error {err:.3e}"


def check_demo_report(run_dir: Path, domain: str, images: list[str], row: str = "") -> str:
    """The report of a `polydiff demo` run: `domain`'s row reads ok (then matches the regex
    `row`), its image links are exactly `images`, each a PNG file. Returns the report text."""
    report = (run_dir / "report.md").read_text()
    assert re.search(rf"^\| {domain} \| ok \|{row}", report, re.M), report
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert links == images
    for link in links:
        assert (run_dir / link).read_bytes()[:4] == b"\x89PNG"
    return report
