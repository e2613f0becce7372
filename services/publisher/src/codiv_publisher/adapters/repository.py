"""Postgres state of the publisher: publications, attempts, video uploads, account pacing."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
from codiv_common.db import Conn, check_schema_name
from codiv_common.events import EnvelopeBase, PostError
from codiv_common.outbox import enqueue

from .metric_plan_repo import plan_from_published

FINAL_STATES = frozenset({"published", "failed"})


@dataclass(frozen=True)
class Publication:
    post_id: uuid.UUID
    state: str
    attempt: int
    next_attempt: int
    failures: int
    resume_reason: str | None
    reserved_slot: dt.datetime | None
    create_started_at: dt.datetime | None
    last_create_at: dt.datetime | None
    pin_id: str | None
    last_error_code: str | None
    last_error_message: str | None
    rate_limited: int = 0


@dataclass(frozen=True)
class MediaUploadRow:
    media_id: str
    status: str
    polls: int
    uploaded_at: dt.datetime


class PinAlreadyClaimed(Exception):
    """Another post already recorded this pin id (reconciliation matched a twin post's pin)."""


_PUBLICATION_COLUMNS = (
    "post_id, state, attempt, next_attempt, failures, resume_reason, reserved_slot,"
    " create_started_at, last_create_at, pin_id, last_error_code, last_error_message,"
    " rate_limited"
)


def _publication(row: asyncpg.Record) -> Publication:
    return Publication(**dict(row))


class PublicationRepository:
    """SQL for one post, on the one connection that holds the post's advisory lock."""

    def __init__(self, conn: Conn, schema: str) -> None:
        self._conn = conn
        self._schema = check_schema_name(schema)

    @property
    def conn(self) -> Conn:
        return self._conn

    async def load(self, post_id: uuid.UUID) -> Publication | None:
        row = await self._conn.fetchrow(
            f"SELECT {_PUBLICATION_COLUMNS} FROM publications WHERE post_id = $1", post_id
        )
        return _publication(row) if row is not None else None

    async def insert_new(
        self,
        *,
        post_id: uuid.UUID,
        workspace_id: uuid.UUID,
        account_id: str | None,
        board_id: str,
        kind: str,
        attempt: int,
    ) -> Publication:
        row = await self._conn.fetchrow(
            "INSERT INTO publications (post_id, workspace_id, account_id, board_id, kind,"
            " state, attempt, next_attempt) VALUES ($1, $2, $3, $4, $5, 'new', $6, $6)"
            f" RETURNING {_PUBLICATION_COLUMNS}",
            post_id,
            workspace_id,
            account_id,
            board_id,
            kind,
            attempt,
        )
        assert row is not None
        return _publication(row)

    async def begin_run(self, post_id: uuid.UUID, attempt: int, *events: EnvelopeBase) -> None:
        """Mark the post in flight for ``attempt`` (committed before any Pinterest call)."""
        async with self._conn.transaction():
            await self._conn.execute(
                "UPDATE publications SET state = 'in_flight', attempt = $2,"
                " next_attempt = greatest(next_attempt, $2), resume_reason = NULL,"
                " updated_at = now() WHERE post_id = $1",
                post_id,
                attempt,
            )
            await enqueue(self._conn, self._schema, *events)

    async def start_step(self, post_id: uuid.UUID, attempt: int, step: str) -> int:
        value = await self._conn.fetchval(
            "INSERT INTO publication_attempts (post_id, attempt, step) VALUES ($1, $2, $3)"
            " RETURNING id",
            post_id,
            attempt,
            step,
        )
        return int(value)

    async def finish_step(self, step_id: int, outcome: str, detail: str | None = None) -> None:
        await self._conn.execute(
            "UPDATE publication_attempts SET finished_at = now(), outcome = $2, detail = $3"
            " WHERE id = $1",
            step_id,
            outcome,
            detail[:1000] if detail else None,
        )

    async def mark_create_started(self, post_id: uuid.UUID) -> tuple[dt.datetime, dt.datetime]:
        """Record that a create is about to be sent: (earliest, latest) create start."""
        row = await self._conn.fetchrow(
            "UPDATE publications SET create_started_at = coalesce(create_started_at, now()),"
            " last_create_at = now(), reserved_slot = NULL, updated_at = now()"
            " WHERE post_id = $1"
            " RETURNING create_started_at, last_create_at",
            post_id,
        )
        assert row is not None
        return row["create_started_at"], row["last_create_at"]

    async def create_answered(self, post_id: uuid.UUID) -> None:
        """Pinterest answered the latest create (an error): none is in progress any more."""
        await self._conn.execute(
            "UPDATE publications SET last_create_at = NULL WHERE post_id = $1", post_id
        )

    async def clear_reserved_slot(self, post_id: uuid.UUID) -> None:
        await self._conn.execute(
            "UPDATE publications SET reserved_slot = NULL WHERE post_id = $1", post_id
        )

    async def record_published(
        self,
        post_id: uuid.UUID,
        *,
        pin_id: str,
        pin_url: str,
        adopted: bool,
        event: EnvelopeBase,
    ) -> None:
        """The pin exists: store it and emit post.published in one transaction."""
        try:
            async with self._conn.transaction():
                await self._conn.execute(
                    "UPDATE publications SET state = 'published', pin_id = $2, pin_url = $3,"
                    " adopted = $4, resume_reason = NULL, reserved_slot = NULL,"
                    " error_code = NULL, error_message = NULL, finished_at = now(),"
                    " updated_at = now() WHERE post_id = $1",
                    post_id,
                    pin_id,
                    pin_url,
                    adopted,
                )
                await plan_from_published(self._conn, event)  # analytics collection plan
                await enqueue(self._conn, self._schema, event)
        except asyncpg.UniqueViolationError as exc:
            raise PinAlreadyClaimed(pin_id) from exc

    async def record_failed(
        self, post_id: uuid.UUID, error: PostError, event: EnvelopeBase
    ) -> None:
        async with self._conn.transaction():
            await self._conn.execute(
                "UPDATE publications SET state = 'failed', error_code = $2, error_message = $3,"
                " resume_reason = NULL, reserved_slot = NULL, finished_at = now(),"
                " updated_at = now() WHERE post_id = $1",
                post_id,
                error.code,
                error.message,
            )
            await enqueue(self._conn, self._schema, event)

    async def record_waiting(
        self,
        post_id: uuid.UUID,
        *,
        next_attempt: int,
        reason: str,
        failed: bool,
        reserved_slot: dt.datetime | None,
        last_error: PostError | None,
        event: EnvelopeBase,
        rate_limited: bool = False,
    ) -> None:
        """A post.retry was decided: store why and emit it in one transaction."""
        async with self._conn.transaction():
            await self._conn.execute(
                "UPDATE publications SET state = 'waiting', next_attempt = $2,"
                " resume_reason = $3, failures = failures + $4::int, reserved_slot = $5,"
                " last_error_code = coalesce($6, last_error_code),"
                " last_error_message = coalesce($7, last_error_message),"
                " rate_limited = rate_limited + $8::int,"
                " updated_at = now() WHERE post_id = $1",
                post_id,
                next_attempt,
                reason,
                1 if failed else 0,
                reserved_slot,
                last_error.code if last_error else None,
                last_error.message if last_error else None,
                1 if rate_limited else 0,
            )
            await enqueue(self._conn, self._schema, event)

    # ------------------------------------------------------------ video uploads

    async def get_media(self, post_id: uuid.UUID) -> MediaUploadRow | None:
        row = await self._conn.fetchrow(
            "SELECT media_id, status, polls, uploaded_at FROM media_uploads WHERE post_id = $1",
            post_id,
        )
        return MediaUploadRow(**dict(row)) if row is not None else None

    async def save_media(self, post_id: uuid.UUID, media_id: str, size: int) -> None:
        await self._conn.execute(
            "INSERT INTO media_uploads (post_id, media_id, status, size_bytes)"
            " VALUES ($1, $2, 'uploaded', $3) ON CONFLICT (post_id) DO UPDATE"
            " SET media_id = EXCLUDED.media_id, status = 'uploaded', polls = 0,"
            " size_bytes = EXCLUDED.size_bytes, uploaded_at = now(), checked_at = NULL",
            post_id,
            media_id,
            size,
        )

    async def update_media(self, post_id: uuid.UUID, status: str, polls: int) -> None:
        await self._conn.execute(
            "UPDATE media_uploads SET status = $2, polls = $3, checked_at = now()"
            " WHERE post_id = $1",
            post_id,
            status,
            polls,
        )

    async def forget_media(self, post_id: uuid.UUID) -> None:
        await self._conn.execute("DELETE FROM media_uploads WHERE post_id = $1", post_id)

    async def is_claimed(self, pin_id: str) -> bool:
        return bool(
            await self._conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM publications WHERE pin_id = $1)", pin_id
            )
        )

    # ------------------------------------------------------------ pacing

    async def reserve_slot(self, account_id: str, interval: float) -> tuple[dt.datetime, float]:
        """Take the account's next write slot; return it and the seconds until it.

        A token bucket of size one kept in Postgres, so every replica shares it.
        """
        row = await self._conn.fetchrow(
            "INSERT INTO account_pacing AS a (account_id, next_slot)"
            " VALUES ($1, clock_timestamp() + make_interval(secs => $2))"
            " ON CONFLICT (account_id) DO UPDATE SET next_slot ="
            " greatest(a.next_slot, clock_timestamp()) + make_interval(secs => $2)"
            " RETURNING a.next_slot - make_interval(secs => $2) AS slot,"
            " extract(epoch FROM a.next_slot - make_interval(secs => $2) - clock_timestamp())"
            "::float8 AS wait",
            account_id,
            interval,
        )
        assert row is not None
        return row["slot"], float(row["wait"])

    async def seconds_until(self, moment: dt.datetime) -> float:
        value = await self._conn.fetchval(
            "SELECT extract(epoch FROM $1::timestamptz - clock_timestamp())::float8", moment
        )
        return float(value)

    async def pause_account(self, account_id: str, seconds: float) -> None:
        """After a 429: no write for this account before ``seconds`` from now."""
        await self._conn.execute(
            "INSERT INTO account_pacing AS a (account_id, next_slot)"
            " VALUES ($1, clock_timestamp() + make_interval(secs => $2))"
            " ON CONFLICT (account_id) DO UPDATE SET next_slot ="
            " greatest(a.next_slot, clock_timestamp() + make_interval(secs => $2))",
            account_id,
            seconds,
        )


def _lock_key_sql() -> str:
    return "hashtextextended('codiv-publisher:' || $1::uuid::text, 0)"


@contextlib.asynccontextmanager
async def locked_publication(
    pool: asyncpg.Pool, schema: str, post_id: uuid.UUID, *, wait: float, poll: float = 0.2
) -> AsyncIterator[PublicationRepository | None]:
    """Hold the post's advisory lock on one pooled connection while handling it.

    Yields ``None`` when another consumer (here or in another replica) still holds the
    lock after ``wait`` seconds. A session lock dies with its connection, so a killed
    process never leaves a post locked.
    """
    async with pool.acquire() as conn:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            got = await conn.fetchval(f"SELECT pg_try_advisory_lock({_lock_key_sql()})", post_id)
            if got:
                break
            if loop.time() >= deadline:
                yield None
                return
            await asyncio.sleep(poll)
        try:
            yield PublicationRepository(conn, schema)
        finally:
            with contextlib.suppress(Exception):
                await conn.execute(f"SELECT pg_advisory_unlock({_lock_key_sql()})", post_id)
