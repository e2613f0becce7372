"""SQL of webhooks and their deliveries (gateway schema)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg
from codiv_common.db import Conn

Db: TypeAlias = "Conn | asyncpg.Pool[asyncpg.Record]"


@dataclass(frozen=True)
class DueDelivery:
    """A claimed delivery with what sending it needs."""

    id: uuid.UUID
    webhook_id: uuid.UUID
    event_type: str
    body: dict[str, Any]
    attempts: int
    created_at: datetime
    url: str
    secret_enc: bytes


class WebhookRepo:
    """Webhooks and deliveries; functions taking ``conn`` join the caller's transaction."""

    @staticmethod
    async def count(conn: Db, workspace_id: uuid.UUID) -> int:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM webhooks WHERE workspace_id = $1", workspace_id
            )
        )

    @staticmethod
    async def insert(
        conn: Db,
        webhook_id: uuid.UUID,
        workspace_id: uuid.UUID,
        url: str,
        events: list[str],
        description: str | None,
        secret_enc: bytes,
    ) -> asyncpg.Record:
        row = await conn.fetchrow(
            "INSERT INTO webhooks (id, workspace_id, url, events, description, secret_enc)"
            " VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
            webhook_id,
            workspace_id,
            url,
            events,
            description,
            secret_enc,
        )
        assert row is not None
        return row

    @staticmethod
    async def all(conn: Db, workspace_id: uuid.UUID) -> list[asyncpg.Record]:
        return list(
            await conn.fetch(
                "SELECT * FROM webhooks WHERE workspace_id = $1 ORDER BY created_at, id",
                workspace_id,
            )
        )

    @staticmethod
    async def get(
        conn: Db, workspace_id: uuid.UUID, webhook_id: uuid.UUID
    ) -> asyncpg.Record | None:
        return await conn.fetchrow(
            "SELECT * FROM webhooks WHERE workspace_id = $1 AND id = $2", workspace_id, webhook_id
        )

    @staticmethod
    async def delete(conn: Db, workspace_id: uuid.UUID, webhook_id: uuid.UUID) -> bool:
        status = await conn.execute(
            "DELETE FROM webhooks WHERE workspace_id = $1 AND id = $2", workspace_id, webhook_id
        )
        return str(status).endswith(" 1")

    @staticmethod
    async def subscribed(conn: Conn, workspace_id: uuid.UUID, public_type: str) -> list[uuid.UUID]:
        rows = await conn.fetch(
            "SELECT id FROM webhooks WHERE workspace_id = $1 AND $2 = ANY (events)",
            workspace_id,
            public_type,
        )
        return [r["id"] for r in rows]

    @staticmethod
    async def insert_delivery(
        conn: Conn,
        delivery_id: uuid.UUID,
        webhook_id: uuid.UUID,
        workspace_id: uuid.UUID,
        event_type: str,
        event_id: uuid.UUID,
        dedupe_key: str,
        body: dict[str, Any],
    ) -> bool:
        inserted = await conn.fetchval(
            "INSERT INTO webhook_deliveries (id, webhook_id, workspace_id, event_type, event_id,"
            " dedupe_key, body) VALUES ($1, $2, $3, $4, $5, $6, $7)"
            " ON CONFLICT (webhook_id, dedupe_key) DO NOTHING RETURNING true",
            delivery_id,
            webhook_id,
            workspace_id,
            event_type,
            event_id,
            dedupe_key,
            body,
        )
        return bool(inserted)

    @staticmethod
    async def deliveries(
        conn: Db,
        webhook_id: uuid.UUID,
        *,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[asyncpg.Record]:
        return list(
            await conn.fetch(
                "SELECT * FROM webhook_deliveries WHERE webhook_id = $1"
                " AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3::uuid))"
                " ORDER BY created_at DESC, id DESC LIMIT $4",
                webhook_id,
                after[0] if after else None,
                after[1] if after else None,
                limit,
            )
        )

    # ------------------------------------------------------------ worker

    @staticmethod
    async def claim_due(pool: asyncpg.Pool, limit: int, lease: float) -> list[DueDelivery]:
        """Lease due deliveries (``FOR UPDATE SKIP LOCKED``: replicas never share one).

        The lease moves ``next_attempt_at`` ahead, so a worker that dies mid-send leaves
        the delivery to be sent again after the lease (at least once)."""
        rows = await pool.fetch(
            "WITH due AS (SELECT id FROM webhook_deliveries WHERE status = 'pending'"
            " AND next_attempt_at <= now() ORDER BY next_attempt_at LIMIT $1"
            " FOR UPDATE SKIP LOCKED)"
            " UPDATE webhook_deliveries d SET next_attempt_at = now() + make_interval(secs => $2)"
            " FROM due, webhooks w WHERE d.id = due.id AND w.id = d.webhook_id"
            " RETURNING d.id, d.webhook_id, d.event_type, d.body, d.attempts, d.created_at,"
            " w.url, w.secret_enc",
            limit,
            lease,
        )
        return [
            DueDelivery(
                id=r["id"],
                webhook_id=r["webhook_id"],
                event_type=r["event_type"],
                body=r["body"],
                attempts=r["attempts"],
                created_at=r["created_at"],
                url=r["url"],
                secret_enc=bytes(r["secret_enc"]),
            )
            for r in rows
        ]

    @staticmethod
    async def record_attempt(
        pool: asyncpg.Pool,
        delivery_id: uuid.UUID,
        *,
        status: str,
        next_attempt_at: datetime | None,
        status_code: int | None,
        error: str | None,
        entry: dict[str, Any],
    ) -> None:
        await pool.execute(
            "UPDATE webhook_deliveries SET status = $2,"
            " next_attempt_at = coalesce($3, next_attempt_at), attempts = attempts + 1,"
            " last_status_code = $4, last_error = $5, attempt_log = attempt_log || $6::jsonb,"
            " delivered_at = CASE WHEN $2 = 'delivered' THEN now() ELSE delivered_at END"
            " WHERE id = $1",
            delivery_id,
            status,
            next_attempt_at,
            status_code,
            error,
            [entry],
        )
