"""SQL of the analytics read model (post and account figures per day)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import asyncpg

from .postgres import Db

# (day, data_status, final, metrics) as stored.
DayRow = tuple[date, str | None, bool, dict[str, float]]

_UPSERT_POST = (
    "INSERT INTO post_metrics_daily AS m (post_id, day, workspace_id, data_status, final,"
    " metrics, collected_at) VALUES ($1, $2, $3, $4, $5, $6, $7)"
    " ON CONFLICT (post_id, day) DO UPDATE SET data_status = EXCLUDED.data_status,"
    " final = EXCLUDED.final, metrics = EXCLUDED.metrics, collected_at = EXCLUDED.collected_at"
    " WHERE NOT m.final AND m.collected_at <= EXCLUDED.collected_at"
)
_UPSERT_ACCOUNT = (
    "INSERT INTO account_metrics_daily AS m (workspace_id, account_id, day, data_status, final,"
    " metrics, collected_at) VALUES ($1, $2, $3, $4, $5, $6, $7)"
    " ON CONFLICT (workspace_id, account_id, day) DO UPDATE SET"
    " data_status = EXCLUDED.data_status, final = EXCLUDED.final, metrics = EXCLUDED.metrics,"
    " collected_at = EXCLUDED.collected_at"
    " WHERE NOT m.final AND m.collected_at <= EXCLUDED.collected_at"
)


def aggregate_columns(counts: Sequence[str], average: str | None, weight: str | None) -> str:
    """SELECT expressions summing each count metric of ``metrics`` (names are constants)."""
    parts = [f"coalesce(sum((metrics->>'{m}')::float8), 0) AS {m}" for m in counts]
    if average and weight:
        parts.append(
            f"sum((metrics->>'{average}')::float8 * coalesce((metrics->>'{weight}')::float8, 0))"
            f" AS _{average}_num"
        )
        parts.append(
            f"sum((metrics->>'{weight}')::float8) FILTER (WHERE metrics ? '{average}')"
            f" AS _{average}_den"
        )
    return ", ".join(parts)


class AnalyticsStore:
    """Repository functions; each takes the connection (or pool) to use."""

    @staticmethod
    async def upsert_post_days(
        conn: Db,
        post_id: uuid.UUID,
        workspace_id: uuid.UUID,
        days: Sequence[DayRow],
        collected_at: datetime,
    ) -> None:
        await conn.executemany(
            _UPSERT_POST,
            [(post_id, d, workspace_id, s, f, m, collected_at) for d, s, f, m in days],
        )

    @staticmethod
    async def upsert_account_days(
        conn: Db,
        workspace_id: uuid.UUID,
        account_id: str,
        days: Sequence[DayRow],
        collected_at: datetime,
    ) -> None:
        await conn.executemany(
            _UPSERT_ACCOUNT,
            [(workspace_id, account_id, d, s, f, m, collected_at) for d, s, f, m in days],
        )

    @staticmethod
    async def post_days(conn: Db, post_id: uuid.UUID, start: date, end: date) -> list[Any]:
        return list(
            await conn.fetch(
                "SELECT day, data_status, final, metrics, collected_at FROM post_metrics_daily"
                " WHERE post_id = $1 AND day BETWEEN $2 AND $3 ORDER BY day",
                post_id,
                start,
                end,
            )
        )

    @staticmethod
    async def account_days(
        conn: Db, workspace_id: uuid.UUID, account_id: str, start: date, end: date
    ) -> list[Any]:
        return list(
            await conn.fetch(
                "SELECT day, data_status, final, metrics, collected_at FROM account_metrics_daily"
                " WHERE workspace_id = $1 AND account_id = $2 AND day BETWEEN $3 AND $4"
                " ORDER BY day",
                workspace_id,
                account_id,
                start,
                end,
            )
        )

    @staticmethod
    async def profile_account(
        conn: Db, workspace_id: uuid.UUID, profile_name: str
    ) -> asyncpg.Record | None:
        return await conn.fetchrow(
            "SELECT p.id, p.name, a.account_id, a.status, a.username FROM profiles p"
            " LEFT JOIN accounts a ON a.profile_id = p.id"
            " WHERE p.workspace_id = $1 AND p.name = $2",
            workspace_id,
            profile_name,
        )

    @staticmethod
    async def grouped(
        conn: Db,
        workspace_id: uuid.UUID,
        profile_name: str | None,
        start: date,
        end: date,
        *,
        group_by: str,
        columns: str,
        order_by: str | None = None,
        limit: int | None = None,
    ) -> list[Any]:
        """Sums over the workspace's post figures, grouped by day, board, post or nothing.

        ``group_by``, ``columns`` and ``order_by`` come from constants, never from input.
        """
        keys = {
            "total": ("", ""),
            "day": ("m.day AS key, NULL::text AS label,", "GROUP BY m.day"),
            "board": (
                "p.board_id AS key, max(p.board_name) AS label,",
                "GROUP BY p.board_id",
            ),
            "post": (
                "p.id::text AS key, max(p.request->>'title') AS label, max(p.pin_id) AS pin_id,"
                " max(p.profile_name) AS profile_name, max(p.board_name) AS board_name,",
                "GROUP BY p.id",
            ),
        }
        select, group = keys[group_by]
        sql = (
            f"SELECT {select} count(DISTINCT m.post_id) AS posts, {columns}"
            " FROM post_metrics_daily m JOIN posts p ON p.id = m.post_id"
            " WHERE m.workspace_id = $1 AND m.day BETWEEN $2 AND $3"
            " AND ($4::text IS NULL OR p.profile_name = $4)"
            f" {group}"
        )
        if order_by:
            sql += f" ORDER BY {order_by}"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return list(await conn.fetch(sql, workspace_id, start, end, profile_name))
