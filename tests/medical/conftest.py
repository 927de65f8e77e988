"""Medical test fixtures: CT matrices are cached in a per-session temporary folder, never in ~."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("POLYDIFF_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
