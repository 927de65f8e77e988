"""Benchmark entry point: `python benchmarks/run.py <area> [options]` (nox: `nox -s bench -- core`).

Each area is a module `benchmarks/<area>.py` with a `main(argv)` function.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    areas = sorted(p.stem for p in HERE.glob("*.py") if p.stem not in {"run", "__init__"})
    if not argv or argv[0] not in areas:
        print(f"usage: python benchmarks/run.py <area> [options]; areas: {', '.join(areas)}")
        return 2
    spec = importlib.util.spec_from_file_location(f"bench_{argv[0]}", HERE / f"{argv[0]}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
