"""Fixtures shared by every distribution's tests."""

from __future__ import annotations

import pytest
from helpers import DOMAINS, imported_polydiff_modules


@pytest.fixture
def assert_layering():
    """Check the dependency direction: a domain package imports the core, never another domain."""

    def check(domain: str) -> None:
        loaded = imported_polydiff_modules(f"polydiff.{domain}")
        assert domain in loaded
        others = loaded & (set(DOMAINS) - {domain})
        assert not others, f"polydiff.{domain} imports other domains: {sorted(others)}"
        assert "apps" not in loaded, f"polydiff.{domain} imports polydiff.apps"

    return check
