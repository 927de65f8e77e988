from helpers import DOMAINS, imported_polydiff_modules


def test_core_imports_no_domain():
    loaded = imported_polydiff_modules("polydiff.core")
    assert "core" in loaded
    assert not loaded & {*DOMAINS, "apps"}, loaded
