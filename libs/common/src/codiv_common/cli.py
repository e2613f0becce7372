"""``codiv``: the admin command line; services add their commands through entry points."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points

from .events import export_schemas_command

# A plugin registers itself under the entry-point group ``codiv.commands`` as a function
# ``register(subparsers)`` that adds sub-commands whose ``func(args) -> int`` runs them.
Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="codiv", description="Codiv administration")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    schemas = sub.add_parser("export-schemas", help="write the events' JSON Schemas")
    schemas.add_argument("directory", help="output folder")
    schemas.set_defaults(func=export_schemas_command)
    for ep in sorted(entry_points(group="codiv.commands"), key=lambda e: e.name):
        register: Register = ep.load()
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 0
    result: int = func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
