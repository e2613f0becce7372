"""The gateway's Postgres repository: plain SQL on its own schema."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any, TypeAlias

import asyncpg
from codiv_common.db import Conn

from ..domain import BoardRef

Db: TypeAlias = "Conn | asyncpg.Pool[asyncpg.Record]"
"""A connection, or a pool for single statements outside a transaction."""

_POST_FILTER = """
    workspace_id = $1
    AND ($2::text IS NULL OR status = $2)
    AND ($3::text IS NULL OR profile_name = $3)
    AND ($4::timestamptz IS NULL OR coalesce(scheduled_at, created_at) >= $4)
    AND ($5::timestamptz IS NULL OR coalesce(scheduled_at, created_at) < $5)
"""


class Store:
    """Repository functions; each takes the connection (and so the transaction) to use."""

    # -------------------------------------------------------------- workspaces, keys

    @staticmethod
    async def create_workspace(conn: Db, ws_id: uuid.UUID, name: str, plan: str) -> None:
        await conn.execute(
            "INSERT INTO workspaces (id, name, plan) VALUES ($1, $2, $3)", ws_id, name, plan
        )

    @staticmethod
    async def find_workspaces(conn: Db, ident: str) -> list[asyncpg.Record]:
        try:
            ws_id: uuid.UUID | None = uuid.UUID(ident)
        except ValueError:
            ws_id = None
        return list(
            await conn.fetch(
                "SELECT id, name, plan FROM workspaces WHERE id = $1 OR name = $2 ORDER BY name",
                ws_id,
                ident,
            )
        )

    @staticmethod
    async def set_plan(conn: Db, ws_id: uuid.UUID, plan: str) -> None:
        await conn.execute("UPDATE workspaces SET plan = $2 WHERE id = $1", ws_id, plan)

    @staticmethod
    async def add_api_key(
        conn: Db, key_id: uuid.UUID, ws_id: uuid.UUID, prefix: str, key_hash: str
    ) -> None:
        await conn.execute(
            "INSERT INTO api_keys (id, workspace_id, prefix, key_hash) VALUES ($1, $2, $3, $4)",
            key_id,
            ws_id,
            prefix,
            key_hash,
        )

    @staticmethod
    async def revoke_api_keys(conn: Db, ident: str, key_hash: str) -> list[asyncpg.Record]:
        try:
            key_id: uuid.UUID | None = uuid.UUID(ident)
        except ValueError:
            key_id = None
        return list(
            await conn.fetch(
                "UPDATE api_keys SET revoked_at = now()"
                " WHERE (id = $1 OR prefix = $2 OR key_hash = $3) AND revoked_at IS NULL"
                " RETURNING id, prefix, workspace_id",
                key_id,
                ident,
                key_hash,
            )
        )

    @staticmethod
    async def list_api_keys(conn: Db, ws_id: uuid.UUID) -> list[asyncpg.Record]:
        return list(
            await conn.fetch(
                "SELECT id, prefix, created_at, revoked_at FROM api_keys"
                " WHERE workspace_id = $1 ORDER BY created_at",
                ws_id,
            )
        )

    @staticmethod
    async def key_owner(conn: Db, key_hash: str) -> asyncpg.Record | None:
        return await conn.fetchrow(
            "SELECT k.id, k.workspace_id, w.plan FROM api_keys k"
            " JOIN workspaces w ON w.id = k.workspace_id"
            " WHERE k.key_hash = $1 AND k.revoked_at IS NULL",
            key_hash,
        )

    @staticmethod
    async def count_request(conn: Db, key_id: uuid.UUID, window: datetime) -> int:
        count: int = await conn.fetchval(
            "INSERT INTO rate_limit_windows (api_key_id, window_start, count) VALUES ($1, $2, 1)"
            " ON CONFLICT (api_key_id, window_start)"
            " DO UPDATE SET count = rate_limit_windows.count + 1 RETURNING count",
            key_id,
            window,
        )
        return count

    @staticmethod
    async def purge(conn: Db, windows_before: datetime, keys_before: datetime) -> None:
        await conn.execute("DELETE FROM rate_limit_windows WHERE window_start < $1", windows_before)
        await conn.execute("DELETE FROM idempotency_keys WHERE created_at < $1", keys_before)

    # -------------------------------------------------------------- idempotency

    @staticmethod
    async def get_idempotency(conn: Db, ws_id: uuid.UUID, key: str) -> asyncpg.Record | None:
        return await conn.fetchrow(
            "SELECT request_hash, status, body, created_at FROM idempotency_keys"
            " WHERE workspace_id = $1 AND key = $2",
            ws_id,
            key,
        )

    @staticmethod
    async def claim_idempotency(
        conn: Db, ws_id: uuid.UUID, key: str, fingerprint: str, expired_before: datetime
    ) -> bool:
        await conn.execute(
            "DELETE FROM idempotency_keys WHERE workspace_id = $1 AND key = $2 AND created_at < $3",
            ws_id,
            key,
            expired_before,
        )
        inserted = await conn.fetchval(
            "INSERT INTO idempotency_keys (workspace_id, key, request_hash) VALUES ($1, $2, $3)"
            " ON CONFLICT DO NOTHING RETURNING true",
            ws_id,
            key,
            fingerprint,
        )
        return bool(inserted)

    @staticmethod
    async def store_idempotency(
        conn: Db, ws_id: uuid.UUID, key: str, status: int, body: dict[str, Any]
    ) -> None:
        await conn.execute(
            "UPDATE idempotency_keys SET status = $3, body = $4"
            " WHERE workspace_id = $1 AND key = $2",
            ws_id,
            key,
            status,
            body,
        )

    # -------------------------------------------------------------- usage

    @staticmethod
    async def take_upload(conn: Db, ws_id: uuid.UUID, period: date, limit: int) -> bool:
        """Count one upload unless the month's ``limit`` is reached (atomic)."""
        if limit <= 0:
            return False
        taken = await conn.fetchval(
            "INSERT INTO usage (workspace_id, period, uploads) VALUES ($1, $2, 1)"
            " ON CONFLICT (workspace_id, period) DO UPDATE SET uploads = usage.uploads + 1"
            " WHERE usage.uploads < $3 RETURNING uploads",
            ws_id,
            period,
            limit,
        )
        return taken is not None

    # -------------------------------------------------------------- profiles

    @staticmethod
    async def lock_workspace(conn: Db, ws_id: uuid.UUID) -> None:
        await conn.execute("SELECT 1 FROM workspaces WHERE id = $1 FOR UPDATE", ws_id)

    @staticmethod
    async def count_profiles(conn: Db, ws_id: uuid.UUID) -> int:
        n: int = await conn.fetchval("SELECT count(*) FROM profiles WHERE workspace_id = $1", ws_id)
        return n

    @staticmethod
    async def insert_profile(conn: Db, profile_id: uuid.UUID, ws_id: uuid.UUID, name: str) -> bool:
        done = await conn.fetchval(
            "INSERT INTO profiles (id, workspace_id, name) VALUES ($1, $2, $3)"
            " ON CONFLICT (workspace_id, name) DO NOTHING RETURNING true",
            profile_id,
            ws_id,
            name,
        )
        return bool(done)

    _PROFILE_SELECT = """
        SELECT p.id, p.name, p.created_at, p.boards_synced_at,
               a.account_id, a.status AS account_status, a.username, a.reason,
               a.refresh_token_expires_at, a.connected_at,
               (SELECT count(*) FROM boards b WHERE b.profile_id = p.id) AS boards_count
        FROM profiles p LEFT JOIN accounts a ON a.profile_id = p.id
    """

    @classmethod
    async def profile(
        cls, conn: Db, ws_id: uuid.UUID, name: str, *, lock: bool = False
    ) -> asyncpg.Record | None:
        sql = cls._PROFILE_SELECT + " WHERE p.workspace_id = $1 AND p.name = $2"
        if lock:
            sql += " FOR UPDATE OF p"
        return await conn.fetchrow(sql, ws_id, name)

    @classmethod
    async def profiles(cls, conn: Db, ws_id: uuid.UUID) -> list[asyncpg.Record]:
        return list(
            await conn.fetch(
                cls._PROFILE_SELECT + " WHERE p.workspace_id = $1 ORDER BY p.created_at, p.name",
                ws_id,
            )
        )

    @staticmethod
    async def profile_in_workspace(
        conn: Db, profile_id: uuid.UUID, ws_id: uuid.UUID
    ) -> asyncpg.Record | None:
        return await conn.fetchrow(
            "SELECT id, boards_synced_at FROM profiles WHERE id = $1 AND workspace_id = $2"
            " FOR UPDATE",
            profile_id,
            ws_id,
        )

    @staticmethod
    async def delete_profile(conn: Db, profile_id: uuid.UUID) -> None:
        await conn.execute("DELETE FROM profiles WHERE id = $1", profile_id)

    @staticmethod
    async def boards(conn: Db, profile_id: uuid.UUID) -> list[BoardRef]:
        rows = await conn.fetch(
            "SELECT board_id, name, sections FROM boards WHERE profile_id = $1 ORDER BY name",
            profile_id,
        )
        return [
            BoardRef(
                r["board_id"],
                r["name"],
                tuple((str(s["id"]), str(s["name"])) for s in (r["sections"] or [])),
            )
            for r in rows
        ]

    @staticmethod
    async def board_rows(conn: Db, profile_id: uuid.UUID) -> list[asyncpg.Record]:
        return list(
            await conn.fetch(
                "SELECT board_id, name, privacy, sections FROM boards WHERE profile_id = $1"
                " ORDER BY name, board_id",
                profile_id,
            )
        )

    @staticmethod
    async def replace_boards(
        conn: Db, profile_id: uuid.UUID, boards: list[dict[str, Any]], synced_at: datetime
    ) -> None:
        await conn.execute("DELETE FROM boards WHERE profile_id = $1", profile_id)
        await conn.executemany(
            "INSERT INTO boards (profile_id, board_id, name, privacy, sections)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            [
                (profile_id, b["id"], b["name"], b.get("privacy"), b.get("sections") or [])
                for b in boards
            ],
        )
        await conn.execute(
            "UPDATE profiles SET boards_synced_at = $2 WHERE id = $1", profile_id, synced_at
        )

    @staticmethod
    async def upsert_account(
        conn: Db,
        profile_id: uuid.UUID,
        ws_id: uuid.UUID,
        account_id: str,
        status: str,
        at: datetime,
        *,
        username: str | None = None,
        reason: str | None = None,
    ) -> None:
        """Apply an account event unless a newer one was applied already (out-of-order safe)."""
        await conn.execute(
            """
            INSERT INTO accounts (profile_id, workspace_id, account_id, status, username, reason,
                                  connected_at, last_event_at)
            VALUES ($1, $2, $3, $4::text, $5, $6,
                    CASE WHEN $4::text = 'connected' THEN $7::timestamptz END, $7)
            ON CONFLICT (profile_id) DO UPDATE SET
                account_id = EXCLUDED.account_id,
                status = EXCLUDED.status,
                username = coalesce(EXCLUDED.username, accounts.username),
                reason = EXCLUDED.reason,
                connected_at = coalesce(EXCLUDED.connected_at, accounts.connected_at),
                last_event_at = EXCLUDED.last_event_at
            WHERE accounts.last_event_at <= EXCLUDED.last_event_at
            """,
            profile_id,
            ws_id,
            account_id,
            status,
            username,
            reason,
            at,
        )

    @staticmethod
    async def set_token_expiry(conn: Db, profile_id: uuid.UUID, expires: datetime) -> None:
        await conn.execute(
            "UPDATE accounts SET refresh_token_expires_at = $2 WHERE profile_id = $1",
            profile_id,
            expires,
        )

    # -------------------------------------------------------------- posts

    @staticmethod
    async def insert_post(conn: Db, row: dict[str, Any]) -> None:
        cols = list(row)
        placeholders = ", ".join(f"${i}" for i in range(1, len(cols) + 1))
        await conn.execute(
            f"INSERT INTO posts ({', '.join(cols)}) VALUES ({placeholders})", *row.values()
        )

    @staticmethod
    async def update_post(conn: Db, post_id: uuid.UUID, changes: dict[str, Any]) -> None:
        if not changes:
            return
        sets = ", ".join(f"{col} = ${i}" for i, col in enumerate(changes, start=2))
        await conn.execute(
            f"UPDATE posts SET {sets}, updated_at = now() WHERE id = $1",
            post_id,
            *changes.values(),
        )

    @staticmethod
    async def post(
        conn: Db, ws_id: uuid.UUID | None, post_id: uuid.UUID, *, lock: bool = False
    ) -> asyncpg.Record | None:
        sql = "SELECT * FROM posts WHERE id = $1 AND ($2::uuid IS NULL OR workspace_id = $2)"
        if lock:
            sql += " FOR UPDATE"
        return await conn.fetchrow(sql, post_id, ws_id)

    @staticmethod
    async def add_timeline(
        conn: Db,
        post_id: uuid.UUID,
        at: datetime,
        kind: str,
        message: str | None = None,
        attempt: int | None = None,
    ) -> None:
        await conn.execute(
            "INSERT INTO post_timeline (post_id, at, kind, attempt, message)"
            " VALUES ($1, $2, $3, $4, $5)",
            post_id,
            at,
            kind,
            attempt,
            message,
        )

    @staticmethod
    async def timeline(conn: Db, post_id: uuid.UUID) -> list[asyncpg.Record]:
        return list(
            await conn.fetch(
                "SELECT at, kind, attempt, message FROM post_timeline WHERE post_id = $1"
                " ORDER BY at, id",
                post_id,
            )
        )

    @staticmethod
    async def list_posts(
        conn: Db,
        ws_id: uuid.UUID,
        *,
        status: str | None,
        profile_name: str | None,
        start: datetime | None,
        end: datetime | None,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[asyncpg.Record]:
        return list(
            await conn.fetch(
                "SELECT * FROM posts WHERE"
                + _POST_FILTER
                + " AND ($6::timestamptz IS NULL OR (created_at, id) < ($6, $7::uuid))"
                " ORDER BY created_at DESC, id DESC LIMIT $8",
                ws_id,
                status,
                profile_name,
                start,
                end,
                after[0] if after else None,
                after[1] if after else None,
                limit,
            )
        )

    @staticmethod
    async def scheduled_posts_of_profile(conn: Db, profile_id: uuid.UUID) -> list[uuid.UUID]:
        rows = await conn.fetch(
            "SELECT id FROM posts WHERE profile_id = $1 AND status = 'scheduled' FOR UPDATE",
            profile_id,
        )
        return [r["id"] for r in rows]
