"""Postgres side of the metric collection plan: plan rows, analytics accounts, leases."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg
from codiv_common.db import Conn, check_schema_name
from codiv_common.events import EnvelopeBase, PostPublishedEvent
from codiv_common.outbox import enqueue

from .. import metrics_plan


@dataclass(frozen=True)
class PlanRow:
    post_id: uuid.UUID
    pin_id: str
    workspace_id: uuid.UUID
    account_id: str
    post_type: str
    published_at: dt.datetime
    stage: int
    final_through: dt.date | None
    failures: int


@dataclass(frozen=True)
class AccountRow:
    account_id: str
    workspace_id: uuid.UUID
    profile_id: uuid.UUID | None
    final_through: dt.date | None
    failures: int


_PLAN_COLUMNS = (
    "post_id, pin_id, workspace_id, account_id, post_type, published_at, stage,"
    " final_through, failures"
)
_ACCOUNT_COLUMNS = "account_id, workspace_id, profile_id, final_through, failures"


async def plan_from_published(conn: Conn, event: EnvelopeBase) -> None:
    """Hook of the publication's transaction: a post.published starts the pin's plan."""
    if isinstance(event, PostPublishedEvent):
        p = event.payload
        await schedule_collection(
            conn, p.post_id, p.published_at, metrics_plan.first_collection(p.published_at)
        )


async def schedule_collection(
    conn: Conn, post_id: uuid.UUID, published_at: dt.datetime, first_at: dt.datetime
) -> None:
    """Start the plan of a just-published pin (call inside the publication's transaction).

    Also makes sure the pin's account gets daily account analytics. Idempotent.
    """
    await conn.execute(
        "INSERT INTO metric_plan (post_id, pin_id, workspace_id, account_id, post_type,"
        " published_at, next_collect_at)"
        " SELECT post_id, pin_id, workspace_id, account_id, kind, $2, $3 FROM publications"
        " WHERE post_id = $1 AND pin_id IS NOT NULL AND account_id IS NOT NULL"
        " ON CONFLICT (post_id) DO NOTHING",
        post_id,
        published_at,
        first_at,
    )
    await conn.execute(
        "INSERT INTO analytics_accounts (account_id, workspace_id, state_at, next_collect_at)"
        " SELECT account_id, workspace_id, $2, $2 FROM publications"
        " WHERE post_id = $1 AND account_id IS NOT NULL"
        " ON CONFLICT (account_id) DO NOTHING",
        post_id,
        published_at,
    )


class MetricPlanRepository:
    """SQL of the collector; every method takes a connection from the pool itself."""

    def __init__(self, pool: Callable[[], asyncpg.Pool], schema: str) -> None:
        self._pool = pool
        self._schema = check_schema_name(schema)

    # ------------------------------------------------------------ pins

    async def claim_pins(self, now: dt.datetime, limit: int, lease: float) -> list[PlanRow]:
        """Lease up to ``limit`` pins due at ``now`` (oldest first), skipping rows that
        another collector holds (its lock or its unexpired lease)."""
        rows = await self._pool().fetch(
            "WITH due AS (SELECT post_id FROM metric_plan"
            " WHERE next_collect_at <= $1"
            " AND (lease_until IS NULL OR lease_until < clock_timestamp())"
            " ORDER BY next_collect_at LIMIT $2 FOR UPDATE SKIP LOCKED)"
            " UPDATE metric_plan m SET lease_until = clock_timestamp()"
            " + make_interval(secs => $3) FROM due WHERE m.post_id = due.post_id"
            f" RETURNING {', '.join('m.' + c.strip() for c in _PLAN_COLUMNS.split(','))}",
            now,
            limit,
            lease,
        )
        out = [PlanRow(**dict(r)) for r in rows]
        out.sort(key=lambda r: r.published_at)
        return out

    async def pin_collected(
        self,
        post_id: uuid.UUID,
        *,
        next_at: dt.datetime | None,
        final_through: dt.date | None,
        collected_at: dt.datetime,
        event: EnvelopeBase | None,
    ) -> None:
        """Advance the plan and emit pin.metrics in one transaction."""
        async with self._pool().acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE metric_plan SET stage = stage + 1, next_collect_at = $2,"
                " final_through = $3, last_collected_at = $4, lease_until = NULL,"
                " failures = 0, last_error = NULL WHERE post_id = $1",
                post_id,
                next_at,
                final_through,
                collected_at,
            )
            if event is not None:
                await enqueue(conn, self._schema, event)

    async def pin_failed(
        self, post_id: uuid.UUID, error: str, next_at: dt.datetime | None, *, count: bool = True
    ) -> None:
        """Come back at ``next_at`` (None: give up on this pin)."""
        await self._pool().execute(
            "UPDATE metric_plan SET failures = failures + $4::int, last_error = $2,"
            " next_collect_at = $3, lease_until = NULL WHERE post_id = $1",
            post_id,
            error[:500],
            next_at,
            1 if count else 0,
        )

    async def release_pins(self, post_ids: list[uuid.UUID]) -> None:
        if post_ids:
            await self._pool().execute(
                "UPDATE metric_plan SET lease_until = NULL WHERE post_id = ANY($1::uuid[])",
                post_ids,
            )

    # ------------------------------------------------------------ accounts

    async def claim_accounts(self, now: dt.datetime, limit: int, lease: float) -> list[AccountRow]:
        rows = await self._pool().fetch(
            "WITH due AS (SELECT account_id FROM analytics_accounts"
            " WHERE active AND next_collect_at <= $1"
            " AND (lease_until IS NULL OR lease_until < clock_timestamp())"
            " ORDER BY next_collect_at LIMIT $2 FOR UPDATE SKIP LOCKED)"
            " UPDATE analytics_accounts a SET lease_until = clock_timestamp()"
            " + make_interval(secs => $3) FROM due WHERE a.account_id = due.account_id"
            f" RETURNING {', '.join('a.' + c.strip() for c in _ACCOUNT_COLUMNS.split(','))}",
            now,
            limit,
            lease,
        )
        return [AccountRow(**dict(r)) for r in rows]

    async def account_collected(
        self,
        account_id: str,
        *,
        next_at: dt.datetime,
        final_through: dt.date | None,
        collected_at: dt.datetime,
        event: EnvelopeBase | None,
    ) -> None:
        async with self._pool().acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE analytics_accounts SET next_collect_at = $2, final_through = $3,"
                " last_collected_at = $4, lease_until = NULL, failures = 0, last_error = NULL"
                " WHERE account_id = $1",
                account_id,
                next_at,
                final_through,
                collected_at,
            )
            if event is not None:
                await enqueue(conn, self._schema, event)

    async def account_failed(
        self, account_id: str, error: str, next_at: dt.datetime, *, stop: bool = False
    ) -> None:
        await self._pool().execute(
            "UPDATE analytics_accounts SET failures = failures + 1, last_error = $2,"
            " next_collect_at = $3, lease_until = NULL, active = active AND NOT $4"
            " WHERE account_id = $1",
            account_id,
            error[:500],
            next_at,
            stop,
        )

    async def release_accounts(self, account_ids: list[str]) -> None:
        if account_ids:
            await self._pool().execute(
                "UPDATE analytics_accounts SET lease_until = NULL"
                " WHERE account_id = ANY($1::text[])",
                account_ids,
            )

    async def account_connected(
        self, account_id: str, workspace_id: uuid.UUID, profile_id: uuid.UUID, at: dt.datetime
    ) -> None:
        """account.connected: collect daily from now on (older events change nothing)."""
        await self._pool().execute(
            "INSERT INTO analytics_accounts AS a (account_id, workspace_id, profile_id, active,"
            " state_at, next_collect_at) VALUES ($1, $2, $3, true, $4, $4)"
            " ON CONFLICT (account_id) DO UPDATE SET active = true,"
            " workspace_id = EXCLUDED.workspace_id, profile_id = EXCLUDED.profile_id,"
            " state_at = EXCLUDED.state_at,"
            " next_collect_at = CASE WHEN a.active THEN a.next_collect_at"
            " ELSE EXCLUDED.next_collect_at END"
            " WHERE a.state_at <= EXCLUDED.state_at",
            account_id,
            workspace_id,
            profile_id,
            at,
        )

    async def account_disconnected(
        self, account_id: str, workspace_id: uuid.UUID, profile_id: uuid.UUID, at: dt.datetime
    ) -> None:
        """account.disconnected: stop collecting (an older event changes nothing)."""
        await self._pool().execute(
            "INSERT INTO analytics_accounts AS a (account_id, workspace_id, profile_id, active,"
            " state_at, next_collect_at) VALUES ($1, $2, $3, false, $4, $4)"
            " ON CONFLICT (account_id) DO UPDATE SET active = false,"
            " state_at = EXCLUDED.state_at WHERE a.state_at <= EXCLUDED.state_at",
            account_id,
            workspace_id,
            profile_id,
            at,
        )

    # ------------------------------------------------------------ pacing

    @staticmethod
    def pacing_key(account_id: str) -> str:
        # The publisher's write bucket (account_pacing), under a key of its own: Pinterest
        # counts org_analytics separately from org_write, and so do we.
        return f"org_analytics:{account_id}"

    async def reserve_slot(self, account_id: str, interval: float) -> tuple[dt.datetime, float]:
        """The account's next analytics call slot and the seconds until it."""
        from .repository import PublicationRepository  # it imports this module's hook

        async with self._pool().acquire() as conn:
            return await PublicationRepository(conn, self._schema).reserve_slot(
                self.pacing_key(account_id), interval
            )

    async def pause(self, account_id: str, seconds: float) -> None:
        """After a 429: no analytics call for this account before ``seconds`` from now."""
        from .repository import PublicationRepository

        async with self._pool().acquire() as conn:
            await PublicationRepository(conn, self._schema).pause_account(
                self.pacing_key(account_id), seconds
            )

    async def next_due(self) -> dt.datetime | None:
        """The earliest planned collection (pins or accounts), for the idle sleep."""
        value = await self._pool().fetchval(
            "SELECT least((SELECT min(next_collect_at) FROM metric_plan),"
            " (SELECT min(next_collect_at) FROM analytics_accounts WHERE active))"
        )
        return value if isinstance(value, dt.datetime) else None
