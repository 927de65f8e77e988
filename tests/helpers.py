"""Helpers shared by the tests of every distribution (importable as `helpers`)."""

from __future__ import annotations

import subprocess
import sys

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
