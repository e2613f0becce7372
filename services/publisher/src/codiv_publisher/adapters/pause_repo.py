"""Postgres side of paused posts: pause, resume in due order, fail after the grace period."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
from codiv_common.db import Conn


@dataclass(frozen=True)
class PausedPost:
    post_id: uuid.UUID
    workspace_id: uuid.UUID
    account_id: str
    attempt: int
    next_attempt: int
    paused_at: dt.datetime
    content: dict[str, Any]
    correlation_id: uuid.UUID | None


_COLUMNS = (
    "post_id, workspace_id, account_id, attempt, next_attempt, paused_at,"
    " paused_content AS content, paused_correlation_id AS correlation_id"
)


def _paused(row: asyncpg.Record) -> PausedPost:
    return PausedPost(**dict(row))


async def lock_account(conn: Conn, account_id: str) -> None:
    """Serialise pausing and resuming of one account (transaction-level advisory lock)."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('codiv-publisher-account:' || $1, 0))",
        account_id,
    )


async def reconnected_since(conn: Conn, account_id: str, since: dt.datetime) -> bool:
    """Whether a reconnect of the account was seen at or after ``since``."""
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM account_reconnects"
            " WHERE account_id = $1 AND reconnected_at >= $2)",
            account_id,
            since,
        )
    )


async def mark_paused(
    conn: Conn,
    post_id: uuid.UUID,
    *,
    attempt: int,
    reason: str,
    content: dict[str, Any],
    correlation_id: uuid.UUID | None,
    due_at: dt.datetime,
) -> dt.datetime:
    """Pause the post (a redelivery of this attempt is then stale); returns ``paused_at``."""
    value = await conn.fetchval(
        "UPDATE publications SET state = 'paused', next_attempt = greatest(next_attempt, $2 + 1),"
        " paused_at = coalesce(paused_at, now()), paused_reason = $3, paused_content = $4,"
        " paused_correlation_id = $5, due_at = coalesce(due_at, $6), resume_reason = NULL,"
        " reserved_slot = NULL, updated_at = now() WHERE post_id = $1 RETURNING paused_at",
        post_id,
        attempt,
        reason,
        content,
        correlation_id,
        due_at,
    )
    assert value is not None
    result: dt.datetime = value
    return result


async def record_reconnect(conn: Conn, account_id: str) -> None:
    await conn.execute(
        "INSERT INTO account_reconnects (account_id, reconnected_at) VALUES ($1, now())"
        " ON CONFLICT (account_id) DO UPDATE SET reconnected_at = now()",
        account_id,
    )


async def paused_of_account(conn: Conn, account_id: str) -> list[PausedPost]:
    """The account's paused posts in due order, row-locked for this transaction."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM publications WHERE account_id = $1 AND state = 'paused'"
        " ORDER BY due_at NULLS LAST, created_at, post_id FOR UPDATE",
        account_id,
    )
    return [_paused(r) for r in rows]


async def mark_resumed(conn: Conn, post_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE publications SET state = 'waiting', resume_reason = 'resumed',"
        " paused_at = NULL, updated_at = now() WHERE post_id = $1",
        post_id,
    )


async def expired_paused(conn: Conn, grace: dt.timedelta, limit: int) -> list[PausedPost]:
    """Paused posts older than ``grace`` that no consumer holds right now (row-locked)."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM publications WHERE state = 'paused'"
        " AND paused_at < now() - $1::interval ORDER BY paused_at LIMIT $2"
        " FOR UPDATE SKIP LOCKED",
        grace,
        limit,
    )
    out = []
    for row in rows:
        # The consumer's session lock on the post: skip a post it is handling right now.
        got = await conn.fetchval(
            "SELECT pg_try_advisory_xact_lock("
            "hashtextextended('codiv-publisher:' || $1::uuid::text, 0))",
            row["post_id"],
        )
        if got:
            out.append(_paused(row))
    return out


async def mark_failed(conn: Conn, post_id: uuid.UUID, code: str, message: str) -> None:
    await conn.execute(
        "UPDATE publications SET state = 'failed', error_code = $2, error_message = $3,"
        " resume_reason = NULL, finished_at = now(), updated_at = now() WHERE post_id = $1",
        post_id,
        code,
        message,
    )
