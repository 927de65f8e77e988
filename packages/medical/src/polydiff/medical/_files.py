"""The user cache folder (atomic writes come from :mod:`polydiff.core.io`)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

CACHE_ENV = "POLYDIFF_CACHE_DIR"


def cache_dir(subdir: str = "") -> Path:
    """The polydiff cache folder, created on first use.

    Order: ``$POLYDIFF_CACHE_DIR``; else the platform's user cache folder, as platformdirs would
    choose it (``$XDG_CACHE_HOME`` or ``~/.cache`` on Linux, ``~/Library/Caches`` on macOS,
    ``%LOCALAPPDATA%`` on Windows) with ``polydiff`` appended.
    """
    root = os.environ.get(CACHE_ENV)
    if root:
        base = Path(root).expanduser()
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches" / "polydiff"
    elif sys.platform.startswith("win"):
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local")) / "polydiff"
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg) if xdg else Path.home() / ".cache") / "polydiff"
    path = base / subdir if subdir else base
    path.mkdir(parents=True, exist_ok=True)
    return path
