"""PostgreSQL repository of the auth service: accounts, token leases, board syncs, states."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
from codiv_common.db import Conn
from codiv_common.events import EnvelopeBase
from codiv_common.outbox import enqueue

from ..domain import OAuthState

PoolGetter = Callable[[], asyncpg.Pool]


@dataclass(frozen=True)
class AccountRow:
    """The columns of an account the services work with (tokens still encrypted)."""

    id: uuid.UUID
    workspace_id: uuid.UUID
    profile_id: uuid.UUID
    profile_name: str
    pinterest_user_id: str
    username: str | None
    status: str
    status_reason: str | None
    access_token_enc: bytes
    refresh_token_enc: bytes
    token_key_id: str
    token_generation: int
    access_issued_at: dt.datetime
    access_expires_at: dt.datetime
    refresh_failures: int
    boards_sync_failures: int
    boards_sync_force: bool

    @classmethod
    def of(cls, r: asyncpg.Record) -> AccountRow:
        return cls(
            id=r["id"],
            workspace_id=r["workspace_id"],
            profile_id=r["profile_id"],
            profile_name=r["profile_name"],
            pinterest_user_id=r["pinterest_user_id"],
            username=r["username"],
            status=r["status"],
            status_reason=r["status_reason"],
            access_token_enc=bytes(r["access_token_enc"]),
            refresh_token_enc=bytes(r["refresh_token_enc"]),
            token_key_id=r["token_key_id"],
            token_generation=r["token_generation"],
            access_issued_at=r["access_issued_at"],
            access_expires_at=r["access_expires_at"],
            refresh_failures=r["refresh_failures"],
            boards_sync_failures=r["boards_sync_failures"],
            boards_sync_force=r["boards_sync_force"],
        )


_COLUMNS = (
    "id, workspace_id, profile_id, profile_name, pinterest_user_id, username, status,"
    " status_reason, access_token_enc, refresh_token_enc, token_key_id, token_generation,"
    " access_issued_at, access_expires_at, refresh_failures, boards_sync_failures,"
    " boards_sync_force"
)


@dataclass(frozen=True)
class NewTokens:
    """Freshly issued tokens, already encrypted, with their schedule."""

    access_token_enc: bytes
    refresh_token_enc: bytes
    key_id: str
    scopes: str
    issued_at: dt.datetime
    expires_at: dt.datetime
    refresh_expires_at: dt.datetime | None
    refresh_due_at: dt.datetime


class AccountRepository:
    """Plain SQL over the ``auth`` schema; methods taking ``conn`` join the caller's transaction."""

    def __init__(self, pool: PoolGetter, schema: str) -> None:
        self._pool = pool
        self.schema = schema

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Conn]:
        async with self._pool().acquire() as conn, conn.transaction():
            yield conn

    async def emit(self, conn: Conn, *events: EnvelopeBase) -> None:
        await enqueue(conn, self.schema, *events)

    # ------------------------------------------------------------ OAuth states

    async def consume_state(self, state: OAuthState) -> bool:
        """Record the state's nonce; False when it was used before (a replay)."""
        async with self._pool().acquire() as conn:
            inserted = await conn.fetchval(
                "INSERT INTO oauth_states_used (nonce, workspace_id, profile_id, expires_at)"
                " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING true",
                state.nonce,
                state.workspace_id,
                state.profile_id,
                state.expires_at,
            )
        return bool(inserted)

    async def purge_used_states(self, older_than: dt.timedelta) -> int:
        """Forget nonces of states that expired long ago (they fail the expiry check anyway)."""
        async with self._pool().acquire() as conn:
            status = await conn.execute(
                "DELETE FROM oauth_states_used WHERE expires_at < now() - $1::interval",
                older_than,
            )
        return int(status.split()[-1])

    # ------------------------------------------------------------ connect / disconnect

    async def lock_for_connection(
        self, conn: Conn, workspace_id: uuid.UUID, profile_id: uuid.UUID, pinterest_user_id: str
    ) -> tuple[AccountRow | None, AccountRow | None]:
        """Lock and return (the row of this Pinterest user in the workspace, the profile's row)."""
        rows = await conn.fetch(
            f"SELECT {_COLUMNS} FROM accounts"
            " WHERE (workspace_id = $1 AND pinterest_user_id = $3) OR profile_id = $2"
            " ORDER BY id FOR UPDATE",
            workspace_id,
            profile_id,
            pinterest_user_id,
        )
        by_user = by_profile = None
        for r in rows:
            row = AccountRow.of(r)
            if row.workspace_id == workspace_id and row.pinterest_user_id == pinterest_user_id:
                by_user = row
            if row.profile_id == profile_id:
                by_profile = row
        return by_user, by_profile

    async def insert_account(
        self,
        conn: Conn,
        account_id: uuid.UUID,
        state: OAuthState,
        pinterest_user_id: str,
        username: str | None,
        tokens: NewTokens,
    ) -> None:
        await conn.execute(
            "INSERT INTO accounts (id, workspace_id, profile_id, profile_name, pinterest_user_id,"
            " username, scopes, access_token_enc, refresh_token_enc, token_key_id,"
            " access_issued_at, access_expires_at, refresh_expires_at, refresh_due_at,"
            " token_refreshed_at, boards_sync_due_at, boards_sync_force)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $11, now(),"
            " true)",
            account_id,
            state.workspace_id,
            state.profile_id,
            state.profile_name,
            pinterest_user_id,
            username,
            tokens.scopes,
            tokens.access_token_enc,
            tokens.refresh_token_enc,
            tokens.key_id,
            tokens.issued_at,
            tokens.expires_at,
            tokens.refresh_expires_at,
            tokens.refresh_due_at,
        )

    async def reconnect_account(
        self,
        conn: Conn,
        account_id: uuid.UUID,
        profile_name: str,
        username: str | None,
        tokens: NewTokens,
    ) -> None:
        """Replace the tokens of an existing account in place and make it active again."""
        await conn.execute(
            "UPDATE accounts SET profile_name = $2, username = $3, scopes = $4,"
            " access_token_enc = $5, refresh_token_enc = $6, token_key_id = $7,"
            " token_generation = token_generation + 1, access_issued_at = $8,"
            " access_expires_at = $9, refresh_expires_at = $10, refresh_due_at = $11,"
            " token_refreshed_at = $8, status = 'active', status_reason = NULL,"
            " refresh_claim = NULL, refresh_claimed_until = NULL, refresh_failures = 0,"
            " refresh_retry_at = NULL, last_refresh_error = NULL, boards_sync_due_at = now(),"
            " boards_sync_force = true, boards_sync_failures = 0, connected_at = now(),"
            " updated_at = now() WHERE id = $1",
            account_id,
            profile_name,
            username,
            tokens.scopes,
            tokens.access_token_enc,
            tokens.refresh_token_enc,
            tokens.key_id,
            tokens.issued_at,
            tokens.expires_at,
            tokens.refresh_expires_at,
            tokens.refresh_due_at,
        )

    async def delete_account(self, conn: Conn, account_id: uuid.UUID) -> None:
        await conn.execute("DELETE FROM accounts WHERE id = $1", account_id)

    async def lock_by_profile(
        self, conn: Conn, workspace_id: uuid.UUID, profile_id: uuid.UUID
    ) -> AccountRow | None:
        r = await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM accounts WHERE workspace_id = $1 AND profile_id = $2"
            " FOR UPDATE",
            workspace_id,
            profile_id,
        )
        return AccountRow.of(r) if r is not None else None

    async def request_board_sync(self, conn: Conn, account_id: uuid.UUID) -> None:
        await conn.execute(
            "UPDATE accounts SET boards_sync_due_at = now(), boards_sync_force = true,"
            " updated_at = now() WHERE id = $1",
            account_id,
        )

    # ------------------------------------------------------------ tokens

    async def get(self, account_id: uuid.UUID) -> AccountRow | None:
        async with self._pool().acquire() as conn:
            r = await conn.fetchrow(f"SELECT {_COLUMNS} FROM accounts WHERE id = $1", account_id)
        return AccountRow.of(r) if r is not None else None

    async def claim_refresh(
        self, claim: uuid.UUID, lease: float, *, account_id: uuid.UUID | None, limit: int = 1
    ) -> list[AccountRow]:
        """Lease active accounts for a refresh: the one given (if its lease is free) or the
        ``limit`` most overdue ones. Rows another replica holds are skipped, not waited for."""
        if account_id is not None:
            where = "id = $3"
            args: tuple[Any, ...] = (account_id,)
        else:
            where = (
                "refresh_due_at <= now()"
                " AND (refresh_retry_at IS NULL OR refresh_retry_at <= now())"
            )
            args = ()
        async with self._pool().acquire() as conn:
            rows = await conn.fetch(
                "UPDATE accounts SET refresh_claim = $1,"
                " refresh_claimed_until = now() + make_interval(secs => $2)"
                " WHERE id IN (SELECT id FROM accounts WHERE status = 'active' AND "
                + where
                + " AND (refresh_claimed_until IS NULL OR refresh_claimed_until < now())"
                f" ORDER BY refresh_due_at LIMIT {int(limit)} FOR UPDATE SKIP LOCKED)"
                f" RETURNING {_COLUMNS}",
                claim,
                lease,
                *args,
            )
        return [AccountRow.of(r) for r in rows]

    async def store_refreshed(self, row: AccountRow, claim: uuid.UUID, tokens: NewTokens) -> bool:
        """Store rotated tokens (access and refresh together, one statement) unless newer
        tokens were stored or the grant was declared dead since ``row`` was read (the token
        generation fences it); release our lease. False when fenced out.

        The generation, not the lease, decides: once Pinterest rotated the refresh token, the
        one we hold is the only valid one, even if our lease ran out meanwhile."""
        async with self._pool().acquire() as conn:
            status = await conn.execute(
                "UPDATE accounts SET access_token_enc = $3, refresh_token_enc = $4,"
                " token_key_id = $5, scopes = $6, access_issued_at = $7, access_expires_at = $8,"
                " refresh_expires_at = COALESCE($9, refresh_expires_at), refresh_due_at = $10,"
                " token_generation = token_generation + 1, token_refreshed_at = now(),"
                " refresh_claim = CASE WHEN refresh_claim = $11 THEN NULL ELSE refresh_claim END,"
                " refresh_claimed_until = CASE WHEN refresh_claim = $11 THEN NULL"
                " ELSE refresh_claimed_until END,"
                " refresh_failures = 0, refresh_retry_at = NULL, last_refresh_error = NULL,"
                " updated_at = now() WHERE id = $1 AND token_generation = $2",
                row.id,
                row.token_generation,
                tokens.access_token_enc,
                tokens.refresh_token_enc,
                tokens.key_id,
                tokens.scopes,
                tokens.issued_at,
                tokens.expires_at,
                tokens.refresh_expires_at,
                tokens.refresh_due_at,
                claim,
            )
        return status.endswith(" 1")

    async def mark_needs_reauth(self, row: AccountRow, reason: str, event: EnvelopeBase) -> bool:
        """Declare the grant dead and emit ``event`` in the same transaction (once)."""
        async with self.transaction() as conn:
            status = await conn.execute(
                "UPDATE accounts SET status = 'needs_reauth', status_reason = $3,"
                " token_generation = token_generation + 1, refresh_claim = NULL,"
                " refresh_claimed_until = NULL, last_refresh_error = $3, updated_at = now()"
                " WHERE id = $1 AND token_generation = $2 AND status = 'active'",
                row.id,
                row.token_generation,
                reason,
            )
            if not status.endswith(" 1"):
                return False
            await self.emit(conn, event)
        return True

    async def record_refresh_failure(
        self, row: AccountRow, claim: uuid.UUID, error: str, retry_at: dt.datetime
    ) -> None:
        async with self._pool().acquire() as conn:
            await conn.execute(
                "UPDATE accounts SET refresh_failures = refresh_failures + 1,"
                " refresh_retry_at = $3, last_refresh_error = $4, refresh_claim = NULL,"
                " refresh_claimed_until = NULL, updated_at = now()"
                " WHERE id = $1 AND refresh_claim = $2",
                row.id,
                claim,
                retry_at,
                error[:500],
            )

    async def release_refresh(self, account_id: uuid.UUID, claim: uuid.UUID) -> None:
        async with self._pool().acquire() as conn:
            await conn.execute(
                "UPDATE accounts SET refresh_claim = NULL, refresh_claimed_until = NULL"
                " WHERE id = $1 AND refresh_claim = $2",
                account_id,
                claim,
            )

    # ------------------------------------------------------------ boards

    async def claim_board_sync(
        self, claim: uuid.UUID, lease: float, *, account_id: uuid.UUID | None, limit: int = 1
    ) -> list[AccountRow]:
        where = "id = $3" if account_id is not None else "boards_sync_due_at <= now()"
        args: tuple[Any, ...] = (account_id,) if account_id is not None else ()
        async with self._pool().acquire() as conn:
            rows = await conn.fetch(
                "UPDATE accounts SET boards_sync_claim = $1,"
                " boards_sync_claimed_until = now() + make_interval(secs => $2)"
                " WHERE id IN (SELECT id FROM accounts WHERE status = 'active' AND "
                + where
                + " AND (boards_sync_claimed_until IS NULL OR boards_sync_claimed_until < now())"
                f" ORDER BY boards_sync_due_at LIMIT {int(limit)} FOR UPDATE SKIP LOCKED)"
                f" RETURNING {_COLUMNS}",
                claim,
                lease,
                *args,
            )
        return [AccountRow.of(r) for r in rows]

    async def store_boards(
        self,
        account_id: uuid.UUID,
        claim: uuid.UUID,
        boards: Sequence[dict[str, Any]],
        digest: str,
        next_due: dt.datetime,
        event: EnvelopeBase,
    ) -> bool | None:
        """Store the board list; emit ``event`` when forced or changed. Returns whether it
        was emitted, or None when the claim was lost (account gone or taken over)."""
        async with self.transaction() as conn:
            r = await conn.fetchrow(
                "SELECT boards_hash, boards_sync_force FROM accounts"
                " WHERE id = $1 AND boards_sync_claim = $2 FOR UPDATE",
                account_id,
                claim,
            )
            if r is None:
                return None
            emit = bool(r["boards_sync_force"]) or r["boards_hash"] != digest
            await conn.execute(
                "UPDATE accounts SET boards = $2, boards_hash = $3, boards_synced_at = now(),"
                " boards_sync_due_at = $4, boards_sync_force = false, boards_sync_claim = NULL,"
                " boards_sync_claimed_until = NULL, boards_sync_failures = 0, updated_at = now()"
                " WHERE id = $1",
                account_id,
                list(boards),
                digest,
                next_due,
            )
            if emit:
                await self.emit(conn, event)
        return emit

    async def record_board_sync_failure(
        self, account_id: uuid.UUID, claim: uuid.UUID, retry_at: dt.datetime
    ) -> None:
        async with self._pool().acquire() as conn:
            await conn.execute(
                "UPDATE accounts SET boards_sync_failures = boards_sync_failures + 1,"
                " boards_sync_due_at = $3, boards_sync_claim = NULL,"
                " boards_sync_claimed_until = NULL WHERE id = $1 AND boards_sync_claim = $2",
                account_id,
                claim,
                retry_at,
            )

    async def release_board_sync(self, account_id: uuid.UUID, claim: uuid.UUID) -> None:
        async with self._pool().acquire() as conn:
            await conn.execute(
                "UPDATE accounts SET boards_sync_claim = NULL, boards_sync_claimed_until = NULL"
                " WHERE id = $1 AND boards_sync_claim = $2",
                account_id,
                claim,
            )

    async def boards_of(self, account_id: uuid.UUID) -> list[dict[str, Any]] | None:
        async with self._pool().acquire() as conn:
            value = await conn.fetchval("SELECT boards FROM accounts WHERE id = $1", account_id)
        return list(value) if value is not None else None
