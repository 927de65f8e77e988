"""Helpers shared by the tests of every distribution (importable as `helpers`)."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import torch
from packaging.requirements import Requirement

DOMAINS = ("text", "motion", "speech", "medical", "crystal", "pde")


_WALK = """
import importlib, json, pkgutil, sys
for name in sys.argv[2:]:
    importlib.import_module(name)
before = set(sys.modules)
root = importlib.import_module(sys.argv[1])
errors = []
walked = [m.name for m in pkgutil.walk_packages(root.__path__, root.__name__ + ".", errors.append)]
for name in walked:
    importlib.import_module(name)
walked.insert(0, root.__name__)
print(json.dumps({"walked": walked, "errors": errors, "added": sorted(set(sys.modules) - before)}))
"""


def walk_package(
    package: str, path: tuple[str, ...] = (), preload: tuple[str, ...] = ()
) -> tuple[set[str], set[str]]:
    """Import `package` and every submodule (pkgutil.walk_packages) in one fresh interpreter
    that has the folders `path` first on its sys.path and has imported the modules `preload`
    first. Returns (the modules walked, the modules this added to sys.modules)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*path, os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(
        [sys.executable, "-c", _WALK, package, *preload], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, f"importing the submodules of {package} failed:\n{out.stderr}"
    result = json.loads(out.stdout.splitlines()[-1])
    assert not result["errors"], f"{package}: submodules that failed to import {result['errors']}"
    return set(result["walked"]), set(result["added"])


def source_files(package: str) -> dict[str, Path]:
    """Module name -> file, for every .py file in `package`'s folder (found, not imported)."""
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.submodule_search_locations, f"{package} is not installed"
    root = Path(next(iter(spec.submodule_search_locations)))
    files = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        files[".".join((package, *parts))] = path
    return files


def imports_in_source(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every module an import statement anywhere in `module`'s source names (function bodies
    included, relative imports resolved; `from a import b` gives `a` and `a.b`), plus
    constant-string `import_module("...")` calls."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            names.add(node.args[0].value)
    return names


def _canonical(dist: str) -> str:
    return re.sub(r"[-_.]+", "-", dist).lower()


def dependency_closure(dist: str) -> set[str]:
    """`dist` and every distribution it requires, transitively (extras left out), by canonical
    name, read from the installed metadata."""
    seen, todo = set(), [dist]
    while todo:
        name = _canonical(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        try:
            requirements = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for requirement in map(Requirement, requirements):
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return seen


def _module_distributions() -> dict[str, set[str]]:
    """Top-level module -> canonical names of the installed distributions providing it."""
    return {
        module: {_canonical(d) for d in dists}
        for module, dists in metadata.packages_distributions().items()
    }


# field libraries the core must never load, also where no domain is installed (nox tests-core)
KNOWN_FIELD_LIBRARIES = {
    "gymnasium", "h5py", "hydra", "librosa", "matplotlib", "mujoco", "nibabel", "pesq",
    "pydicom", "pymatgen", "pystoi", "pywt", "soundfile", "tokenizers",
}  # fmt: skip


def _installed_requires(dist: str) -> list[str]:
    try:
        return metadata.requires(dist) or []
    except metadata.PackageNotFoundError:  # e.g. the core's own session installs no domain
        return []


def field_library_modules() -> set[str]:
    """Top-level modules of the libraries that an installed domain or the apps declare and the
    core does not need (librosa, tokenizers, matplotlib, ...), and the known ones: the core must
    never load one."""
    core = dependency_closure("polydiff-core")
    declared = {
        _canonical(Requirement(r).name)
        for dist in (*DOMAINS, "apps")
        for r in _installed_requires(f"polydiff-{dist}")
    }
    field = {d for d in declared - core if not d.startswith("polydiff-")}
    found = {module for module, dists in _module_distributions().items() if dists <= field}
    return found | KNOWN_FIELD_LIBRARIES


def forbidden_packages(dist: str) -> set[str]:
    """The polydiff packages `polydiff.<dist>` must not import (DESIGN.md: apps -> domains ->
    core): the core no domain and no app, a domain no other domain and no app."""
    if dist == "apps":
        return set()
    return {f"polydiff.{d}" for d in (*DOMAINS, "apps") if d != dist}


def layering_violations(imports: set[str], forbidden: set[str], allowed: set[str]) -> list[str]:
    """The `imports` (module names) that name a `forbidden` package or one of its submodules, or a
    third-party top-level module not provided by a distribution in `allowed` (canonical names):
    an undeclared dependency, or one not installed at all."""
    providers = _module_distributions()
    bad = []
    for name in sorted(imports):
        top = name.partition(".")[0]
        if any(name == f or name.startswith(f + ".") for f in forbidden):
            bad.append(name)
        elif top not in {"polydiff", "__future__"} and top not in sys.stdlib_module_names:
            if not providers.get(top, set()) & allowed:
                bad.append(f"{name} (not a declared dependency)")
    return bad


def declared_modules(dist: str) -> tuple[str, ...]:
    """Top-level modules of the third-party distributions `dist` requires directly."""
    direct = {_canonical(Requirement(r).name) for r in metadata.requires(dist) or []}
    return tuple(sorted(m for m, dists in _module_distributions().items() if dists & direct))


def assert_imports_follow_layering(dist: str, path: tuple[str, ...] = ()) -> None:
    """Importing `polydiff.<dist>` and every submodule (one fresh interpreter) reaches every source
    file and loads no package the layering forbids; for the core, also no field library beyond
    what its declared dependencies load by themselves (torchmetrics loads matplotlib if present)."""
    package = f"polydiff.{dist}"
    forbidden, preload = forbidden_packages(dist), ()
    if dist == "core":
        forbidden, preload = forbidden | field_library_modules(), declared_modules("polydiff-core")
    walked, added = walk_package(package, path, preload)
    missed = set(source_files(package)) - walked
    assert not missed, f"pkgutil did not reach {sorted(missed)} (a folder without __init__.py?)"
    prefixes = tuple(f + "." for f in forbidden)
    pulled = sorted(m for m in added if m in forbidden or m.startswith(prefixes))
    assert not pulled, f"importing every module of {package} loads {pulled}"


def assert_sources_follow_layering(dist: str) -> None:
    """No import statement in `polydiff.<dist>`'s source files, lazy ones inside functions
    included, names a polydiff package the layering forbids or a library that `polydiff-<dist>`
    does not depend on (checked without importing anything)."""
    package, forbidden = f"polydiff.{dist}", forbidden_packages(dist)
    allowed = dependency_closure(f"polydiff-{dist}")
    bad = [
        f"{path.name} ({module}): {name}"
        for module, path in source_files(package).items()
        for name in layering_violations(
            imports_in_source(path.read_text(), module, path.name == "__init__.py"),
            forbidden,
            allowed,
        )
    ]
    assert not bad, f"{package} sources import what they must not:\n" + "\n".join(bad)


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
