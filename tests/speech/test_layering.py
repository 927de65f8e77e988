def test_imports_no_other_domain(assert_layering):
    assert_layering("speech")
