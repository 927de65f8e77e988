from helpers import assert_imports_follow_layering, assert_sources_follow_layering


def test_importing_every_module_loads_no_other_domain():
    assert_imports_follow_layering("pde")


def test_sources_import_no_other_domain_or_undeclared_library():
    assert_sources_follow_layering("pde")
