"""Run every benchmark module ``benchmarks/<name>/bench.py`` in turn and print its figures.

Each module exposes ``main(argv: list[str]) -> int``; arguments (e.g. ``--quick``) are
passed through. ``python -m benchmarks scheduler`` runs only the named ones.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    here = Path(__file__).parent
    names = sorted(p.parent.name for p in here.glob("*/bench.py"))
    chosen = [a for a in argv if not a.startswith("-")]
    flags = [a for a in argv if a.startswith("-")]
    unknown = set(chosen) - set(names)
    if unknown:
        print(f"unknown benchmark(s): {', '.join(sorted(unknown))}; have: {', '.join(names)}")
        return 2
    status = 0
    for name in chosen or names:
        print(f"=== benchmark: {name}", flush=True)
        module = importlib.import_module(f"benchmarks.{name}.bench")
        code = int(module.main(flags))
        print(f"=== {name}: exit {code}", flush=True)
        status = status or code
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
