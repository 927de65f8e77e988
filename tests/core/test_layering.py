from pathlib import Path

import pytest
from helpers import (
    assert_imports_follow_layering,
    assert_sources_follow_layering,
    dependency_closure,
    field_library_modules,
    forbidden_packages,
    imports_in_source,
    layering_violations,
)


def test_importing_every_module_loads_no_domain_app_or_field_library():
    assert_imports_follow_layering("core")


def test_sources_import_no_domain_app_or_undeclared_library():
    assert_sources_follow_layering("core")


def core_violations(source: str, module: str = "polydiff.core.solvers.euler") -> list[str]:
    """What the source scan reports for `source` placed at `module` of the core."""
    imports = imports_in_source(source, module)
    return layering_violations(
        imports, forbidden_packages("core"), dependency_closure("polydiff-core")
    )


@pytest.mark.parametrize(
    "source, caught",
    [
        ("import polydiff.text", "polydiff.text"),
        ("from polydiff import speech", "polydiff.speech"),
        ("from polydiff.apps.cli import main", "polydiff.apps"),
        ("from ...medical import ct", "polydiff.medical"),
        ("def f():\n    from polydiff.pde import x\n    return x", "polydiff.pde"),
        ("import importlib\nimportlib.import_module('polydiff.crystal')", "polydiff.crystal"),
        ("def load():\n    import soundfile", "soundfile (not a declared dependency)"),
        ("import matplotlib.pyplot as plt", "matplotlib"),
        ("import librosa", "librosa (not a declared dependency)"),
    ],
)
def test_source_scan_catches_a_bad_import(source, caught):
    bad = core_violations("import torch\n" + source)
    assert any(b.startswith(caught) for b in bad), bad


def test_source_scan_accepts_the_core_its_dependencies_and_the_stdlib():
    source = (
        "from __future__ import annotations\nimport math, json\nimport numpy as np\n"
        "import torch.nn.functional as F\nfrom scipy import special\nfrom . import base\n"
        "from ..paths import VP\nfrom polydiff.core.utils import expand_like\n"
    )
    assert imports_in_source(source, "polydiff.core.solvers.euler") >= {
        "polydiff.core.solvers.base",
        "polydiff.core.paths.VP",
    }
    assert core_violations(source) == []


def test_field_libraries_are_the_domains_dependencies_the_core_lacks():
    field = field_library_modules()
    assert {"soundfile", "tokenizers", "matplotlib", "nibabel", "hydra"} <= field
    assert not field & {"torch", "numpy", "scipy", "lightning", "safetensors"}


def write_package(root, files: dict[str, str]) -> None:
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)


@pytest.fixture
def fake_domain(tmp_path, monkeypatch):
    """A domain `polydiff.fakedomain` (joining the namespace from tmp_path) whose files the test
    writes; returns (write, path for the fresh interpreter)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    base = {"__init__.py": "", "nets/__init__.py": "", "nets/blocks.py": "import torch\n"}
    write_package(tmp_path / "polydiff/fakedomain", base)

    def write(files):
        write_package(tmp_path / "polydiff/fakedomain", files)

    return write, (str(tmp_path),)


def test_clean_fake_domain_passes(fake_domain):
    _, path = fake_domain
    assert_imports_follow_layering("fakedomain", path)


def test_import_walk_catches_another_domain_loaded_by_a_deep_submodule(fake_domain):
    write, path = fake_domain
    write_package(Path(path[0]) / "polydiff/pde", {"__init__.py": ""})  # installed or not
    write({"nets/attention.py": "import polydiff.pde\n"})
    with pytest.raises(AssertionError, match=r"loads \['polydiff\.pde'"):
        assert_imports_follow_layering("fakedomain", path)


def test_import_walk_catches_a_folder_it_cannot_reach(fake_domain):
    write, path = fake_domain
    write({"data/loader.py": "import json\n"})  # no data/__init__.py
    with pytest.raises(
        AssertionError, match=r"did not reach \['polydiff\.fakedomain\.data\.loader"
    ):
        assert_imports_follow_layering("fakedomain", path)
