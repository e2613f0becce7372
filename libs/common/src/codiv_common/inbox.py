"""Idempotent consumers: record (consumer, event_id) in the same transaction as the writes."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

from .db import Conn, check_schema_name

T = TypeVar("T")


async def process_once(
    pool: asyncpg.Pool,
    schema: str,
    consumer: str,
    event_id: uuid.UUID,
    work: Callable[[Conn], Awaitable[T]],
) -> tuple[bool, T | None]:
    """Run ``work(conn)`` in one transaction unless ``consumer`` already processed ``event_id``.

    Returns ``(True, result)`` when the work ran and committed, ``(False, None)`` for a
    duplicate. The inbox row is inserted first in the same transaction, so a concurrent
    duplicate blocks on the primary key and then finds the row: never check-then-act.
    """
    table = f"{check_schema_name(schema)}.processed_events"
    async with pool.acquire() as conn, conn.transaction():
        inserted = await conn.fetchval(
            f"INSERT INTO {table} (consumer, event_id) VALUES ($1, $2)"
            " ON CONFLICT DO NOTHING RETURNING true",
            consumer,
            event_id,
        )
        if not inserted:
            return False, None
        return True, await work(conn)


async def purge_processed(pool: asyncpg.Pool, schema: str, older_than_days: float) -> int:
    """Delete inbox rows older than ``older_than_days``; return how many went."""
    table = f"{check_schema_name(schema)}.processed_events"
    status: str = await pool.execute(
        f"DELETE FROM {table} WHERE processed_at < now() - make_interval(secs => $1)",
        older_than_days * 86400.0,
    )
    return int(status.split()[-1])
