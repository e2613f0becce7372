"""`codiv admin ...`: workspaces and API keys, straight against the gateway's database."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
from codiv_common.db import migrate_dsn
from codiv_common.runtime import SHARED_MIGRATIONS
from codiv_common.settings import DEFAULT_DATABASE_URL

from . import domain
from .adapters.postgres import Store

SCHEMA = "gateway"
MIGRATIONS = Path(__file__).parent / "migrations"


class CommandError(Exception):
    """A message for the operator; exit status 1."""


async def _with_db(dsn: str, work: Callable[[asyncpg.Connection], Awaitable[int]]) -> int:
    await migrate_dsn(dsn, SCHEMA, [SHARED_MIGRATIONS, MIGRATIONS])
    conn = await asyncpg.connect(dsn, server_settings={"search_path": f"{SCHEMA},public"})
    try:
        async with conn.transaction():
            return await work(conn)
    finally:
        await conn.close()


async def _workspace(conn: asyncpg.Connection, ident: str) -> asyncpg.Record:
    found = await Store.find_workspaces(conn, ident)
    if not found:
        raise CommandError(f"no workspace {ident!r}")
    if len(found) > 1:
        raise CommandError(f"{len(found)} workspaces are named {ident!r}; pass the id")
    return found[0]


async def _new_key(conn: asyncpg.Connection, ws_id: uuid.UUID) -> dict[str, str]:
    key = domain.generate_api_key()
    key_id = uuid.uuid4()
    await Store.add_api_key(conn, key_id, ws_id, key.prefix, key.key_hash)
    return {"api_key": key.key, "api_key_id": str(key_id), "api_key_prefix": key.prefix}


def _print(args: argparse.Namespace, data: dict[str, Any], note: str | None = None) -> None:
    if args.json:
        print(json.dumps(data))
        return
    for k, v in data.items():
        print(f"{k}: {v}")
    if note:
        print(note, file=sys.stderr)


def create_workspace(args: argparse.Namespace) -> int:
    async def work(conn: asyncpg.Connection) -> int:
        ws_id = uuid.uuid4()
        await Store.create_workspace(conn, ws_id, args.name, args.plan)
        data = {"workspace_id": str(ws_id), "name": args.name, "plan": args.plan}
        data |= await _new_key(conn, ws_id)
        _print(args, data, "The API key is shown once; only its hash is stored.")
        return 0

    return _run(args, work)


def create_api_key(args: argparse.Namespace) -> int:
    async def work(conn: asyncpg.Connection) -> int:
        ws = await _workspace(conn, args.workspace)
        data = {"workspace_id": str(ws["id"])} | await _new_key(conn, ws["id"])
        _print(args, data, "The API key is shown once; only its hash is stored.")
        return 0

    return _run(args, work)


def revoke_api_key(args: argparse.Namespace) -> int:
    async def work(conn: asyncpg.Connection) -> int:
        ident = args.key
        revoked = await Store.revoke_api_keys(conn, ident, domain.hash_api_key(ident))
        if not revoked:
            raise CommandError(f"no active API key matches {ident!r}")
        if len(revoked) > 1:
            raise CommandError(f"{len(revoked)} keys match {ident!r}; pass the key id")
        _print(args, {"revoked": str(revoked[0]["id"]), "api_key_prefix": revoked[0]["prefix"]})
        return 0

    return _run(args, work)


def list_api_keys(args: argparse.Namespace) -> int:
    async def work(conn: asyncpg.Connection) -> int:
        ws = await _workspace(conn, args.workspace)
        for row in await Store.list_api_keys(conn, ws["id"]):
            state = "revoked" if row["revoked_at"] else "active"
            print(f"{row['id']}  {row['prefix']}...  {state}  created {row['created_at']:%Y-%m-%d}")
        return 0

    return _run(args, work)


def set_plan(args: argparse.Namespace) -> int:
    async def work(conn: asyncpg.Connection) -> int:
        ws = await _workspace(conn, args.workspace)
        await Store.set_plan(conn, ws["id"], args.plan)
        _print(args, {"workspace_id": str(ws["id"]), "plan": args.plan})
        return 0

    return _run(args, work)


def _run(args: argparse.Namespace, work: Callable[[asyncpg.Connection], Awaitable[int]]) -> int:
    dsn = args.database_url or os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    try:
        return asyncio.run(_with_db(dsn, work))
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"error: database: {exc}", file=sys.stderr)
        return 2


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `codiv admin ...` (entry point group codiv.commands)."""
    admin = subparsers.add_parser("admin", help="workspaces and API keys (gateway)")
    sub = admin.add_subparsers(dest="admin_command", metavar="ADMIN_COMMAND", required=True)

    def command(name: str, help_text: str, func: Callable[[argparse.Namespace], int]) -> Any:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--database-url", help="default: $DATABASE_URL")
        p.add_argument("--json", action="store_true", help="print one JSON object")
        p.set_defaults(func=func)
        return p

    p = command(
        "create-workspace", "create a workspace and print its first API key", create_workspace
    )
    p.add_argument("--name", required=True)
    p.add_argument("--plan", choices=domain.PLANS, default="free")
    p = command("create-api-key", "add an API key to a workspace (printed once)", create_api_key)
    p.add_argument("--workspace", required=True, help="workspace id or name")
    p = command("revoke-api-key", "revoke an API key at once", revoke_api_key)
    p.add_argument("key", help="the key id, its prefix (cdv_live_xxxxxx) or the key itself")
    p = command("list-api-keys", "list a workspace's keys (prefixes only)", list_api_keys)
    p.add_argument("--workspace", required=True, help="workspace id or name")
    p = command("set-plan", "change a workspace's plan", set_plan)
    p.add_argument("--workspace", required=True, help="workspace id or name")
    p.add_argument("--plan", choices=domain.PLANS, required=True)
