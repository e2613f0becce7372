"""asyncpg pool creation and a per-service, replica-safe migration runner."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from .logging import get_logger

log = get_logger(__name__)

Conn: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"
"""A connection, whether taken from a pool or opened directly."""

_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typ in ("json", "jsonb"):
        await conn.set_type_codec(typ, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_pool(
    dsn: str,
    schema: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    command_timeout: float = 30.0,
) -> asyncpg.Pool:
    """Create a pool whose connections use ``schema`` first on their search path.

    json/jsonb columns are decoded to Python objects.
    """
    check_schema_name(schema)
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        command_timeout=command_timeout,
        server_settings={"search_path": f"{schema},public", "application_name": f"codiv-{schema}"},
        init=_init_connection,
    )
    assert pool is not None
    return pool


def check_schema_name(schema: str) -> str:
    """Refuse schema names that would need quoting (they are interpolated into SQL)."""
    if not _SCHEMA_NAME.match(schema):
        raise ValueError(f"invalid schema name: {schema!r}")
    return schema


@dataclass(frozen=True)
class Migration:
    """One numbered SQL file."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(directory: Path) -> list[Migration]:
    """Read ``NNNN_name.sql`` files from ``directory`` in version order."""
    found: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        match = _MIGRATION_NAME.match(path.name)
        if not match:
            raise ValueError(f"migration file name must look like 0001_name.sql: {path.name}")
        found.append(Migration(int(match.group(1)), match.group(2), path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"duplicate migration versions in {directory}")
    return found


def _lock_key(schema: str) -> int:
    digest = hashlib.sha256(f"codiv-migrate:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def migrate(conn: asyncpg.Connection, schema: str, migrations: list[Migration]) -> list[int]:
    """Apply the migrations not yet applied to ``schema``; return the versions applied.

    A session-level advisory lock serialises replicas starting together; each file is
    applied in its own transaction together with its row in ``schema_migrations``. A
    file whose content changed after it was applied is reported, not re-applied.
    """
    check_schema_name(schema)
    key = _lock_key(schema)
    await conn.execute("SELECT pg_advisory_lock($1)", key)
    try:
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        await conn.execute(
            f"""CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
                version integer PRIMARY KEY,
                name text NOT NULL,
                checksum text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        rows = await conn.fetch(f"SELECT version, checksum FROM {schema}.schema_migrations")
        applied = {r["version"]: r["checksum"] for r in rows}
        done: list[int] = []
        for m in migrations:
            if m.version in applied:
                if applied[m.version] != m.checksum:
                    log.warning("migration_changed_after_apply", schema=schema, version=m.version)
                continue
            async with conn.transaction():
                await conn.execute(f"SET LOCAL search_path TO {schema}, public")
                await conn.execute(m.sql)
                await conn.execute(
                    f"INSERT INTO {schema}.schema_migrations (version, name, checksum)"
                    " VALUES ($1, $2, $3)",
                    m.version,
                    m.name,
                    m.checksum,
                )
            done.append(m.version)
            log.info("migration_applied", schema=schema, version=m.version, name=m.name)
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", key)


async def migrate_dsn(dsn: str, schema: str, directories: list[Path]) -> list[int]:
    """Open one connection to ``dsn`` and apply every migration found in ``directories``.

    Directories are applied in order with their own version spaces kept apart by
    prefixing: pass the shared (outbox/inbox) migrations first.
    """
    migrations: list[Migration] = []
    for offset, directory in enumerate(directories):
        for m in load_migrations(directory):
            migrations.append(Migration(offset * 10000 + m.version, m.name, m.sql))
    conn = await asyncpg.connect(dsn)
    try:
        return await migrate(conn, schema, migrations)
    finally:
        await conn.close()


def record_to_dict(record: asyncpg.Record | None) -> dict[str, Any] | None:
    """A row as a plain dict (None stays None)."""
    return dict(record) if record is not None else None
