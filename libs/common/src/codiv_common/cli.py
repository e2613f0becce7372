"""``codiv``: the admin command line; services add their commands through entry points."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points

from .events import export_schemas_command
from .runtime import ServiceSpec, migrate_service
from .settings import DEFAULT_DATABASE_URL

# A plugin registers itself under the entry-point group ``codiv.commands`` as a function
# ``register(subparsers)`` that adds sub-commands whose ``func(args) -> int`` runs them.
Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


def service_specs() -> dict[str, ServiceSpec]:
    """Every installed service's spec, from the ``codiv.services`` entry points.

    An entry point names the service's composition-root module; it declares ``SPEC``,
    or ``service_spec(settings)`` when the spec depends on settings.
    """
    specs: dict[str, ServiceSpec] = {}
    for ep in sorted(entry_points(group="codiv.services"), key=lambda e: e.name):
        module = ep.load()
        spec = getattr(module, "SPEC", None)
        if spec is None:
            package = module.__name__.rsplit(".", 1)[0]
            settings = importlib.import_module(f"{package}.settings").Settings()
            spec = module.service_spec(settings)
        specs[ep.name] = spec
    return specs


def migrate_command(args: argparse.Namespace) -> int:
    """``codiv migrate [SERVICE ...]``: apply migrations (all services by default)."""
    specs = service_specs()
    wanted = args.services or list(specs)
    unknown = set(wanted) - set(specs)
    if unknown:
        print(f"unknown service(s): {', '.join(sorted(unknown))}; have {', '.join(specs)}")
        return 2
    dsn = os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL)

    async def run() -> None:
        for name in wanted:
            applied = await migrate_service(dsn, specs[name])
            print(f"migrated schema={specs[name].schema} applied={applied}", flush=True)

    asyncio.run(run())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="codiv", description="Codiv administration")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    schemas = sub.add_parser("export-schemas", help="write the events' JSON Schemas")
    schemas.add_argument("directory", help="output folder")
    schemas.set_defaults(func=export_schemas_command)
    migrate = sub.add_parser("migrate", help="apply database migrations (all services)")
    migrate.add_argument("services", nargs="*", help="only these services")
    migrate.set_defaults(func=migrate_command)
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
