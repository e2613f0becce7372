"""Plain SQL on the scheduler schema: jobs, their locks, the due batch and wake-ups."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from codiv_common.db import Conn, check_schema_name
from codiv_common.events import PostContent

from ..domain import Job, JobState

NOTIFY_CHANNEL = "scheduler_jobs"
"""LISTEN/NOTIFY channel; the payload is the due time of a job that became pending (epoch s)."""

_JOB_COLUMNS = (
    "post_id, workspace_id, state, due_at, attempt, content, revision, changed_at,"
    " correlation_id, causation_id"
)


@dataclass(frozen=True)
class ReleasedJob:
    """A row the release claimed, with the database clock at the claim."""

    post_id: uuid.UUID
    workspace_id: uuid.UUID
    due_at: datetime
    attempt: int
    content: dict[str, Any]
    correlation_id: uuid.UUID | None
    causation_id: uuid.UUID | None
    released_at: datetime


def _job(row: asyncpg.Record) -> Job:
    content = row["content"]
    return Job(
        post_id=row["post_id"],
        workspace_id=row["workspace_id"],
        state=JobState(row["state"]),
        due_at=row["due_at"],
        attempt=row["attempt"],
        content=PostContent.model_validate(content) if content is not None else None,
        revision=row["revision"],
        changed_at=row["changed_at"],
        correlation_id=row["correlation_id"],
        causation_id=row["causation_id"],
    )


def _params(job: Job) -> tuple[Any, ...]:
    return (
        job.post_id,
        job.workspace_id,
        job.state.value,
        job.due_at,
        job.attempt,
        job.content.model_dump(mode="json") if job.content is not None else None,
        job.revision,
        job.changed_at,
        job.correlation_id,
        job.causation_id,
    )


class JobRepository:
    """The ``jobs`` table of one schema (interpolated after validation; values are bound)."""

    def __init__(self, schema: str) -> None:
        self._s = check_schema_name(schema)

    async def lock(self, conn: Conn, post_id: uuid.UUID) -> Job | None:
        """The job, row-locked until the transaction ends (waits for a release in progress)."""
        row = await conn.fetchrow(
            f"SELECT {_JOB_COLUMNS} FROM {self._s}.jobs WHERE post_id = $1 FOR UPDATE", post_id
        )
        return _job(row) if row is not None else None

    async def insert(self, conn: Conn, job: Job) -> bool:
        """Insert a new job; False when a concurrent transaction inserted it first."""
        inserted = await conn.fetchval(
            f"INSERT INTO {self._s}.jobs ({_JOB_COLUMNS})"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
            " ON CONFLICT (post_id) DO NOTHING RETURNING true",
            *_params(job),
        )
        return bool(inserted)

    async def update(self, conn: Conn, job: Job) -> None:
        """Overwrite a locked job's state."""
        await conn.execute(
            f"UPDATE {self._s}.jobs SET workspace_id = $2, state = $3, due_at = $4, attempt = $5,"
            " content = $6, revision = $7, changed_at = $8, correlation_id = $9,"
            " causation_id = $10, updated_at = now() WHERE post_id = $1",
            *_params(job),
        )

    async def notify_pending(self, conn: Conn, due_at: datetime) -> None:
        """Wake release loops (delivered at commit) with the new job's due time."""
        await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, str(due_at.timestamp()))

    async def claim_due(self, conn: Conn, limit: int, replica: str) -> list[ReleasedJob]:
        """Mark up to ``limit`` due pending jobs released, earliest first; rows another
        transaction holds (another replica's batch, a cancel in progress) are skipped."""
        rows = await conn.fetch(
            f"""WITH due AS (
                    SELECT post_id FROM {self._s}.jobs
                    WHERE state = 'pending' AND due_at <= statement_timestamp()
                    ORDER BY due_at LIMIT $1
                    FOR UPDATE SKIP LOCKED)
                UPDATE {self._s}.jobs j
                SET state = 'released', released_at = clock_timestamp(), released_by = $2,
                    updated_at = clock_timestamp()
                FROM due WHERE j.post_id = due.post_id
                RETURNING j.post_id, j.workspace_id, j.due_at, j.attempt, j.content,
                          j.correlation_id, j.causation_id, j.released_at""",
            limit,
            replica,
        )
        jobs = [
            ReleasedJob(
                post_id=r["post_id"],
                workspace_id=r["workspace_id"],
                due_at=r["due_at"],
                attempt=r["attempt"],
                content=r["content"],
                correlation_id=r["correlation_id"],
                causation_id=r["causation_id"],
                released_at=r["released_at"],
            )
            for r in rows
        ]
        jobs.sort(key=lambda j: (j.due_at, j.post_id))
        return jobs

    async def next_due(self, conn: Conn) -> tuple[datetime | None, datetime]:
        """The earliest pending due time (locked rows included) and the database clock."""
        row = await conn.fetchrow(
            f"SELECT (SELECT due_at FROM {self._s}.jobs WHERE state = 'pending'"
            " ORDER BY due_at LIMIT 1) AS due_at, clock_timestamp() AS now"
        )
        assert row is not None
        return row["due_at"], row["now"]

    async def purge_finished(self, conn: Conn, older_than_days: float, limit: int = 10000) -> int:
        """Delete up to ``limit`` released or cancelled jobs untouched for that long."""
        status: str = await conn.execute(
            f"DELETE FROM {self._s}.jobs WHERE post_id IN (SELECT post_id FROM {self._s}.jobs"
            " WHERE state IN ('released', 'cancelled')"
            " AND updated_at < now() - make_interval(secs => $1) LIMIT $2)",
            older_than_days * 86400.0,
            limit,
        )
        return int(status.split()[-1])

    async def count_pending(self, conn: Conn) -> int:
        value = await conn.fetchval(f"SELECT count(*) FROM {self._s}.jobs WHERE state = 'pending'")
        return int(value)
