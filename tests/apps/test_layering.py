from helpers import assert_imports_follow_layering


def test_every_module_imports():
    """Every command module imports (the CLI loads most of them only when their verb runs)."""
    assert_imports_follow_layering("apps")
