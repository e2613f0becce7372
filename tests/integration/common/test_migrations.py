"""The migration runner: idempotent, and safe when replicas start together."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import asyncpg
import pytest
from codiv_common.db import load_migrations, migrate_dsn

pytestmark = pytest.mark.integration


def _write(tmp_path: Path) -> Path:
    d = tmp_path / "migrations"
    d.mkdir()
    (d / "0001_items.sql").write_text(
        "CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL);"
    )
    (d / "0002_items_seed.sql").write_text("INSERT INTO items (name) VALUES ('first');")
    return d


async def test_applied_twice_leaves_one_schema(database_url: str, tmp_path: Path) -> None:
    d = _write(tmp_path)
    assert await migrate_dsn(database_url, "svc", [d]) == [1, 2]
    assert await migrate_dsn(database_url, "svc", [d]) == []
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM svc.items") == 1
        assert await conn.fetchval("SELECT count(*) FROM svc.schema_migrations") == 2
    finally:
        await conn.close()


async def test_concurrent_runners_apply_each_file_once(database_url: str, tmp_path: Path) -> None:
    d = _write(tmp_path)
    script = (
        "import asyncio,sys;from pathlib import Path;from codiv_common.db import migrate_dsn;"
        f"print(asyncio.run(migrate_dsn({database_url!r}, 'svc', [Path({str(d)!r})])))"
    )
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            script,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(4)
    ]
    outputs = [await p.communicate() for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    results = sorted(out.decode().strip().splitlines()[-1] for out, _ in outputs)
    assert results == ["[1, 2]", "[]", "[]", "[]"]
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM svc.items") == 1
    finally:
        await conn.close()


async def test_a_failing_migration_applies_nothing_of_itself(
    database_url: str, tmp_path: Path
) -> None:
    d = _write(tmp_path)
    (d / "0003_broken.sql").write_text("CREATE TABLE half (id int); SELECT * FROM nope;")
    with pytest.raises(asyncpg.UndefinedTableError):
        await migrate_dsn(database_url, "svc", [d])
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT to_regclass('svc.half')") is None
        versions = await conn.fetch("SELECT version FROM svc.schema_migrations ORDER BY 1")
        assert [r["version"] for r in versions] == [1, 2]
    finally:
        await conn.close()


def test_bad_file_names_are_refused(tmp_path: Path) -> None:
    (tmp_path / "init.sql").write_text("SELECT 1")
    with pytest.raises(ValueError, match=r"0001_name\.sql"):
        load_migrations(tmp_path)
