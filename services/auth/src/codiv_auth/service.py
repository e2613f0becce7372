"""Use cases of the auth service: connect, tokens (get, invalidate, refresh ahead), boards."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import random
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from codiv_common.crypto import constant_time_equal, sha256_hex
from codiv_common.db import Conn
from codiv_common.events import (
    AccountBoardsSynced,
    AccountBoardsSyncedEvent,
    AccountConnected,
    AccountConnectedEvent,
    AccountDisconnected,
    AccountDisconnectedEvent,
    AccountDisconnectRequestedEvent,
    AccountNeedsReauth,
    AccountNeedsReauthEvent,
    AccountSyncRequestedEvent,
    caused_by,
)
from codiv_common.logging import bind_context, get_logger
from codiv_pinterest.client import PinterestClient
from codiv_pinterest.errors import PinterestError, TokenRefused, Unauthorized
from codiv_pinterest.models import Board, TokenResponse
from prometheus_client import CollectorRegistry, Counter

from .adapters.postgres import AccountRepository, AccountRow, NewTokens
from .domain import (
    AccountConflict,
    AccountNotFound,
    ConnectFailed,
    NeedsReauth,
    OAuthState,
    RefreshOutcome,
    RefreshUnavailable,
    StateRejected,
    TokenCipher,
    TokenDecryptionFailed,
    boards_digest,
    classify_refresh_error,
    parse_state,
    refresh_due_at,
    refusal_reason,
    retry_delay,
)

log = get_logger(__name__)

PRODUCER = "auth"
Spawn = Callable[[Coroutine[Any, Any, Any], str], "asyncio.Task[Any]"]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class AuthMetrics:
    """The auth service's own metrics, on the process' registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.refreshes = Counter(
            "codiv_auth_token_refreshes_total",
            "Token refresh attempts by trigger and outcome",
            ["trigger", "outcome"],
            registry=registry,
        )
        self.access_tokens = Counter(
            "codiv_auth_access_token_requests_total",
            "Internal access-token requests by outcome",
            ["operation", "outcome"],
            registry=registry,
        )
        self.board_syncs = Counter(
            "codiv_auth_board_syncs_total",
            "Board syncs by outcome",
            ["outcome"],
            registry=registry,
        )
        self.callbacks = Counter(
            "codiv_auth_oauth_callbacks_total",
            "OAuth callbacks by outcome",
            ["outcome"],
            registry=registry,
        )


@dataclass(frozen=True)
class OAuthApp:
    """Our Pinterest app: credentials and the redirect URI registered with Pinterest."""

    client_id: str
    client_secret: str = field(repr=False)
    redirect_uri: str
    scopes: tuple[str, ...] = ()


@dataclass(frozen=True)
class TokenPolicy:
    ahead_ratio: float = 0.8
    jitter_ratio: float = 0.05
    lease: float = 90.0
    retry_base: float = 5.0
    retry_max: float = 900.0
    min_validity: float = 60.0
    invalidate_coalesce: float = 10.0
    wait_for_other_refresh: float = 20.0


@dataclass(frozen=True)
class AccessToken:
    token: str = field(repr=False)
    expires_at: dt.datetime


def _parse_account_id(account_id: str | uuid.UUID) -> uuid.UUID:
    if isinstance(account_id, uuid.UUID):
        return account_id
    try:
        return uuid.UUID(account_id)
    except ValueError as exc:
        raise AccountNotFound(str(account_id)[:64]) from exc


class Tokens:
    """Access tokens for the publisher and the refresh-ahead of every account's tokens.

    Every refresh (scheduled, on demand, after a 401) first leases the account row
    (``refresh_claimed_until``, claimed with ``FOR UPDATE SKIP LOCKED`` in a short
    transaction), then calls Pinterest with no transaction open, then stores the access
    and the rotated refresh token in one statement fenced by the token generation. So
    replicas never refresh the same token twice and a slow call holds no locks.
    """

    def __init__(
        self,
        repo: AccountRepository,
        client: PinterestClient,
        cipher: TokenCipher,
        app: OAuthApp,
        policy: TokenPolicy,
        metrics: AuthMetrics,
        rng: random.Random | None = None,
    ) -> None:
        self.repo = repo
        self.client = client
        self.cipher = cipher
        self.app = app
        self.policy = policy
        self.metrics = metrics
        self._rng = rng or random.Random()
        # Account health (health.py): told about every failed refresh.
        self.on_refresh_failure: Callable[[uuid.UUID], Awaitable[object]] | None = None

    # ------------------------------------------------------------ helpers

    def new_tokens(
        self,
        account_id: uuid.UUID,
        answer: TokenResponse,
        issued_at: dt.datetime,
        previous_refresh_token: str | None = None,
    ) -> NewTokens:
        """Encrypt an OAuth token answer for ``account_id`` and schedule its refresh.

        A refresh answer without a refresh token (legacy, non-rotating grants) keeps
        ``previous_refresh_token``; a code exchange without one is refused."""
        refresh_token = answer.refresh_token or previous_refresh_token
        if not refresh_token:
            raise ConnectFailed("no_refresh_token", "Pinterest issued no refresh token", status=502)
        refresh_expires_at = (
            dt.datetime.fromtimestamp(answer.refresh_token_expires_at, dt.UTC)
            if answer.refresh_token_expires_at
            else (
                issued_at + dt.timedelta(seconds=answer.refresh_token_expires_in)
                if answer.refresh_token_expires_in
                else None
            )
        )
        return NewTokens(
            access_token_enc=self.cipher.encrypt(account_id, answer.access_token),
            refresh_token_enc=self.cipher.encrypt(account_id, refresh_token),
            key_id=self.cipher.current_key_id,
            scopes=",".join(sorted(answer.scopes)),
            issued_at=issued_at,
            expires_at=issued_at + dt.timedelta(seconds=answer.expires_in),
            refresh_expires_at=refresh_expires_at,
            refresh_due_at=refresh_due_at(
                issued_at,
                answer.expires_in,
                self.policy.ahead_ratio,
                self.policy.jitter_ratio,
                self._rng,
            ),
        )

    def _current(self, row: AccountRow) -> AccessToken:
        return AccessToken(self.cipher.decrypt(row.id, row.access_token_enc), row.access_expires_at)

    def _fresh_enough(self, row: AccountRow) -> bool:
        # Hand out a token only with some life left: min_validity, or a tenth of its life
        # for tokens that live less than ten times that (never refresh on every request).
        life = (row.access_expires_at - row.access_issued_at).total_seconds()
        margin = dt.timedelta(seconds=min(self.policy.min_validity, max(0.0, life) / 10))
        return row.access_expires_at - margin > utcnow()

    async def _load(self, account_id: uuid.UUID) -> AccountRow:
        row = await self.repo.get(account_id)
        if row is None:
            raise AccountNotFound(str(account_id))
        if row.status != "active":
            raise NeedsReauth(str(row.id), row.status_reason or "refresh refused")
        return row

    # ------------------------------------------------------------ internal API

    async def access_token(self, account_id: str | uuid.UUID) -> AccessToken:
        """The account's access token, refreshed first when expired or about to expire."""
        aid = _parse_account_id(account_id)
        row = await self._load(aid)
        if self._fresh_enough(row):
            return self._current(row)
        return await self._refresh_now(row, trigger="expired")

    async def invalidate(
        self, account_id: str | uuid.UUID, rejected_sha256: str | None = None
    ) -> AccessToken:
        """Pinterest answered 401 to an access token: refresh now (or find the account's
        grant dead).

        With ``rejected_sha256`` (the SHA-256 of the token Pinterest refused) the answer is
        exact: a different current token is returned as is (another worker already had it
        replaced), the refused one is refreshed at once. Without it, calls within
        ``invalidate_coalesce`` seconds of the last refresh get that token instead of
        refreshing again (many workers hit the same 401)."""
        aid = _parse_account_id(account_id)
        row = await self._load(aid)
        if rejected_sha256 is not None:
            current = self._current(row)
            if not constant_time_equal(sha256_hex(current.token), rejected_sha256):
                return current
            return await self._refresh_now(row, trigger="invalidated")
        recent = utcnow() - dt.timedelta(seconds=self.policy.invalidate_coalesce)
        if row.access_issued_at > recent:
            return self._current(row)
        return await self._refresh_now(row, trigger="invalidated")

    async def _refresh_now(self, row: AccountRow, *, trigger: str) -> AccessToken:
        """Refresh ``row`` now, or wait for the replica that is refreshing it."""
        deadline = asyncio.get_running_loop().time() + self.policy.wait_for_other_refresh
        generation = row.token_generation
        while True:
            claim = uuid.uuid4()
            claimed = await self.repo.claim_refresh(claim, self.policy.lease, account_id=row.id)
            if claimed:
                if claimed[0].token_generation == generation:
                    return await self._refresh_claimed(claimed[0], claim, trigger=trigger)
                # Refreshed by someone else since this request read the row: use that.
                await self.repo.release_refresh(row.id, claim)
                return self._current(claimed[0])
            if asyncio.get_running_loop().time() > deadline:
                raise RefreshUnavailable("a refresh of this account is still running", 2.0)
            await asyncio.sleep(0.1)
            current = await self._load(row.id)
            if current.token_generation != generation:
                return self._current(current)  # the refresh in flight elsewhere finished

    # ------------------------------------------------------------ refresh

    async def _refresh_claimed(
        self, row: AccountRow, claim: uuid.UUID, *, trigger: str
    ) -> AccessToken:
        """Refresh a leased account. Raises NeedsReauth, RefreshUnavailable or
        TokenDecryptionFailed; the lease is released in every case."""
        try:
            refresh_token = self.cipher.decrypt(row.id, row.refresh_token_enc)
        except TokenDecryptionFailed:
            log.error("token_decryption_failed", account_id=str(row.id), key_id=row.token_key_id)
            self.metrics.refreshes.labels(trigger, "decryption_failed").inc()
            await self._record_failure(row, claim, "token does not decrypt with the key ring")
            raise
        issued_at = utcnow()
        try:
            answer = await self.client.refresh_token(
                self.app.client_id, self.app.client_secret, refresh_token
            )
        except PinterestError as exc:
            return await self._refresh_failed(row, claim, exc, trigger=trigger)
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.repo.release_refresh(row.id, claim))
            raise
        tokens = self.new_tokens(row.id, answer, issued_at, refresh_token)
        if not await self.repo.store_refreshed(row, claim, tokens):
            # Newer tokens were stored, or the account was disconnected or marked dead meanwhile.
            self.metrics.refreshes.labels(trigger, "fenced").inc()
            log.warning("token_refresh_fenced", account_id=str(row.id))
            current = await self._load(row.id)
            return self._current(current)
        self.metrics.refreshes.labels(trigger, "ok").inc()
        log.info(
            "token_refreshed",
            account_id=str(row.id),
            trigger=trigger,
            expires_at=tokens.expires_at.isoformat(),
            refresh_due_at=tokens.refresh_due_at.isoformat(),
        )
        return AccessToken(answer.access_token, tokens.expires_at)

    async def _refresh_failed(
        self, row: AccountRow, claim: uuid.UUID, exc: PinterestError, *, trigger: str
    ) -> AccessToken:
        outcome = classify_refresh_error(exc)
        if outcome is RefreshOutcome.REFUSED:
            reason = refusal_reason(exc)
            event = AccountNeedsReauthEvent(
                workspace_id=row.workspace_id,
                producer=PRODUCER,
                payload=AccountNeedsReauth(
                    account_id=str(row.id), profile_id=row.profile_id, reason=reason
                ),
            )
            marked = await self.repo.mark_needs_reauth(row, reason, event)
            self.metrics.refreshes.labels(trigger, "refused").inc()
            if not marked:
                # Someone stored newer tokens meanwhile: our refusal was for a spent token.
                log.warning("token_refresh_refusal_fenced", account_id=str(row.id))
                return self._current(await self._load(row.id))
            log.warning(
                "account_needs_reauth",
                account_id=str(row.id),
                profile_id=str(row.profile_id),
                reason=reason,
                request_id=exc.request_id,
            )
            raise NeedsReauth(str(row.id), reason) from exc
        label = "operator_error" if outcome is RefreshOutcome.OPERATOR else "transient"
        self.metrics.refreshes.labels(trigger, label).inc()
        delay = await self._record_failure(row, claim, f"{type(exc).__name__}: {exc.message}")
        if outcome is RefreshOutcome.OPERATOR:
            log.error(
                "token_refresh_rejected_client",
                account_id=str(row.id),
                status=exc.status,
                message=exc.message,
                hint="check PINTEREST_CLIENT_ID / PINTEREST_CLIENT_SECRET",
            )
        else:
            log.warning(
                "token_refresh_retry",
                account_id=str(row.id),
                error_type=type(exc).__name__,
                status=exc.status,
                retry_in=round(delay, 1),
            )
        if self._fresh_enough(row) and trigger != "invalidated":
            return self._current(row)
        raise RefreshUnavailable(
            "Pinterest could not refresh the token right now", min(delay, 30.0)
        ) from exc

    async def _record_failure(self, row: AccountRow, claim: uuid.UUID, error: str) -> float:
        delay = retry_delay(
            row.refresh_failures + 1, self.policy.retry_base, self.policy.retry_max, self._rng
        )
        await self.repo.record_refresh_failure(
            row, claim, error, utcnow() + dt.timedelta(seconds=delay)
        )
        if self.on_refresh_failure is not None:
            await self.on_refresh_failure(row.id)
        return delay

    async def refresh_due(self, batch_size: int, concurrency: int) -> int:
        """One pass of the refresh loop: lease up to ``batch_size`` due accounts, refresh
        them ``concurrency`` at a time. Returns how many were leased."""
        claim = uuid.uuid4()
        rows = await self.repo.claim_refresh(
            claim, self.policy.lease, account_id=None, limit=batch_size
        )
        if not rows:
            return 0

        async def one(row: AccountRow) -> None:
            bind_context(account_id=str(row.id))
            with contextlib.suppress(NeedsReauth, RefreshUnavailable, TokenDecryptionFailed):
                await self._refresh_claimed(row, claim, trigger="scheduled")

        await _bounded(one, rows, concurrency)
        return len(rows)


async def _bounded(
    work: Callable[[AccountRow], Awaitable[None]], rows: list[AccountRow], concurrency: int
) -> None:
    """Run ``work`` over ``rows`` with at most ``concurrency`` at once (N workers)."""
    it: Iterator[AccountRow] = iter(rows)

    async def worker() -> None:
        for row in it:
            try:
                await work(row)
            except Exception:
                log.exception("account_work_failed", account_id=str(row.id))

    async with asyncio.TaskGroup() as tg:
        for _ in range(min(concurrency, len(rows))):
            tg.create_task(worker())


# ---------------------------------------------------------------- boards


@dataclass(frozen=True)
class BoardPolicy:
    interval: float = 21600.0
    concurrency: int = 8
    lease: float = 300.0
    retry_base: float = 30.0


class BoardSync:
    """Syncs each account's boards and sections (every page) and emits the snapshot.

    ``account.boards_synced`` is emitted after a connect or a requested sync, and by the
    periodic sync only when the list changed (the gateway keeps its copy from it).
    """

    def __init__(
        self,
        repo: AccountRepository,
        client: PinterestClient,
        tokens: Tokens,
        policy: BoardPolicy,
        metrics: AuthMetrics,
    ) -> None:
        self.repo = repo
        self.client = client
        self.tokens = tokens
        self.policy = policy
        self.metrics = metrics
        self._rng = random.Random()

    async def sync_due(self, batch_size: int) -> int:
        claim = uuid.uuid4()
        rows = await self.repo.claim_board_sync(
            claim, self.policy.lease, account_id=None, limit=batch_size
        )
        for row in rows:
            bind_context(account_id=str(row.id))
            try:
                await self._sync(row, claim)
            except Exception:
                log.exception("board_sync_crashed", account_id=str(row.id))
                with contextlib.suppress(Exception):
                    await self.repo.release_board_sync(row.id, claim)
        return len(rows)

    async def sync_account(self, account_id: uuid.UUID) -> bool:
        """Sync one account now unless another worker is at it; True when it synced here."""
        claim = uuid.uuid4()
        rows = await self.repo.claim_board_sync(claim, self.policy.lease, account_id=account_id)
        if not rows:
            return False
        return await self._sync(rows[0], claim)

    async def _sync(self, row: AccountRow, claim: uuid.UUID) -> bool:
        try:
            boards = await self._fetch_with_token(row)
        except (NeedsReauth, AccountNotFound):
            self.metrics.board_syncs.labels("needs_reauth").inc()
            await self.repo.release_board_sync(row.id, claim)
            return False
        except (PinterestError, RefreshUnavailable, TokenDecryptionFailed) as exc:
            delay = retry_delay(
                row.boards_sync_failures + 1,
                self.policy.retry_base,
                self.policy.interval,
                self._rng,
            )
            self.metrics.board_syncs.labels("failed").inc()
            log.warning(
                "board_sync_failed",
                account_id=str(row.id),
                error_type=type(exc).__name__,
                error=str(exc)[:300],
                retry_in=round(delay, 1),
            )
            await self.repo.record_board_sync_failure(
                row.id, claim, utcnow() + dt.timedelta(seconds=delay)
            )
            return False
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.repo.release_board_sync(row.id, claim))
            raise
        event = AccountBoardsSyncedEvent(
            workspace_id=row.workspace_id,
            producer=PRODUCER,
            payload=AccountBoardsSynced(
                account_id=str(row.id),
                profile_id=row.profile_id,
                boards=boards,  # dicts, validated into Board models
            ),
        )
        jitter = self._rng.uniform(0, 0.1 * self.policy.interval)
        emitted = await self.repo.store_boards(
            row.id,
            claim,
            boards,
            boards_digest(boards),
            utcnow() + dt.timedelta(seconds=self.policy.interval + jitter),
            event,
        )
        if emitted is None:
            self.metrics.board_syncs.labels("lost").inc()
            return False
        self.metrics.board_syncs.labels("emitted" if emitted else "unchanged").inc()
        log.info(
            "boards_synced",
            account_id=str(row.id),
            boards=len(boards),
            sections=sum(len(b["sections"]) for b in boards),
            emitted=emitted,
        )
        return True

    async def _fetch_with_token(self, row: AccountRow) -> list[dict[str, Any]]:
        token = await self.tokens.access_token(row.id)
        try:
            return await self.fetch_boards(token.token)
        except Unauthorized as exc:
            if exc.missing_scope or isinstance(exc, TokenRefused):
                raise
            # The access token was rejected before its time (revoked?): refresh once.
            token = await self.tokens.invalidate(row.id)
            return await self.fetch_boards(token.token)

    async def fetch_boards(self, access_token: str) -> list[dict[str, Any]]:
        """Every board (all pages) with every section (all pages), as event dicts."""
        boards: list[Board] = await self.client.list_boards(access_token)
        sections: dict[str, list[dict[str, str]]] = {}
        it = iter(boards)

        async def worker() -> None:
            for board in it:
                found = await self.client.list_board_sections(access_token, board.id)
                sections[board.id] = [{"id": s.id, "name": s.name} for s in found]

        async with asyncio.TaskGroup() as tg:
            for _ in range(min(self.policy.concurrency, len(boards))):
                tg.create_task(worker())
        return [
            {"id": b.id, "name": b.name, "privacy": b.privacy, "sections": sections[b.id]}
            for b in boards
        ]


# ---------------------------------------------------------------- connections


@dataclass(frozen=True)
class ConnectResult:
    account_id: uuid.UUID
    profile_name: str
    reconnected: bool
    boards_synced: bool


class Connections:
    """The OAuth callback, disconnects and board-sync requests."""

    def __init__(
        self,
        repo: AccountRepository,
        client: PinterestClient,
        tokens: Tokens,
        boards: BoardSync,
        app: OAuthApp,
        state_secret: bytes,
        metrics: AuthMetrics,
        *,
        spawn: Spawn,
        callback_sync_timeout: float = 20.0,
        on_boards_requested: Callable[[], None] = lambda: None,
    ) -> None:
        self.repo = repo
        self.client = client
        self.tokens = tokens
        self.boards = boards
        self.app = app
        self._state_secret = state_secret
        self.metrics = metrics
        self._spawn = spawn
        self._callback_sync_timeout = callback_sync_timeout
        self._on_boards_requested = on_boards_requested

    async def complete(self, code: str | None, state_token: str | None) -> ConnectResult:
        """Finish an OAuth connect: verify and burn the state, exchange the code, store the
        account and emit ``account.connected``, then sync boards (bounded wait)."""
        state = parse_state(self._state_secret, state_token)
        bind_context(workspace_id=str(state.workspace_id), profile_id=str(state.profile_id))
        if not await self.repo.consume_state(state):
            raise StateRejected("was already used")
        if not code or len(code) > 2048:
            raise ConnectFailed("missing_code", "Pinterest sent no authorization code")
        issued_at = utcnow()
        try:
            answer = await self.client.exchange_code(
                self.app.client_id, self.app.client_secret, code, self.app.redirect_uri
            )
            missing = sorted(set(self.app.scopes) - answer.scopes)
            if missing:
                raise ConnectFailed(
                    "insufficient_scope",
                    "Pinterest granted fewer permissions than Codiv needs to publish (missing: "
                    f"{', '.join(missing)}). Please connect again and allow every permission.",
                )
            user = await self.client.get_user_account(answer.access_token)
        except TokenRefused as exc:
            if exc.client_authentication_failed:
                log.error("oauth_client_rejected", hint="check PINTEREST_CLIENT_ID / SECRET")
                raise ConnectFailed(
                    "app_misconfigured",
                    "Pinterest did not accept this application's credentials. "
                    "Please contact support.",
                    status=502,
                ) from exc
            raise ConnectFailed(
                "code_rejected",
                "Pinterest did not accept the authorization (it may have expired or been "
                "used already). Please start connecting again.",
            ) from exc
        except Unauthorized as exc:
            raise ConnectFailed(
                "insufficient_scope" if exc.missing_scope else "token_rejected",
                "Pinterest did not let Codiv read your account with the permissions you "
                "granted. Please connect again and allow every permission.",
            ) from exc
        except PinterestError as exc:
            if not exc.retryable:
                log.warning("oauth_connect_pinterest_error", status=exc.status, code=exc.code)
            raise ConnectFailed(
                "pinterest_unavailable" if exc.retryable else "pinterest_error",
                "Pinterest could not be reached to finish connecting. Please try again "
                "in a minute.",
                status=502,
            ) from exc
        account_id, reconnected = await self._store(
            state, user.id, user.username, answer, issued_at
        )
        bind_context(account_id=str(account_id))
        log.info(
            "account_connected",
            account_id=str(account_id),
            pinterest_user_id=user.id,
            reconnected=reconnected,
        )
        synced = await self._initial_board_sync(account_id)
        return ConnectResult(account_id, state.profile_name, reconnected, synced)

    async def _store(
        self,
        state: OAuthState,
        user_id: str,
        username: str | None,
        answer: TokenResponse,
        issued_at: dt.datetime,
    ) -> tuple[uuid.UUID, bool]:
        for attempt in range(3):
            try:
                return await self._store_once(state, user_id, username, answer, issued_at)
            except asyncpg.UniqueViolationError:
                # A concurrent connect of the same profile or user won the insert: redo
                # the decision with its row visible.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _store_once(
        self,
        state: OAuthState,
        user_id: str,
        username: str | None,
        answer: TokenResponse,
        issued_at: dt.datetime,
    ) -> tuple[uuid.UUID, bool]:
        async with self.repo.transaction() as conn:
            by_user, by_profile = await self.repo.lock_for_connection(
                conn, state.workspace_id, state.profile_id, user_id
            )
            if by_user is not None and by_user.profile_id != state.profile_id:
                raise AccountConflict(username, by_user.profile_name)
            events: list[Any] = []
            if by_profile is not None and (by_user is None or by_profile.id != by_user.id):
                # The profile had another Pinterest account: connecting this one replaces it.
                await self.repo.delete_account(conn, by_profile.id)
                events.append(self._disconnected_event(by_profile))
            if by_user is not None:
                account_id, reconnected = by_user.id, True
                tokens = self.tokens.new_tokens(account_id, answer, issued_at)
                await self.repo.reconnect_account(
                    conn, account_id, state.profile_name, username, tokens
                )
            else:
                account_id, reconnected = uuid.uuid4(), False
                tokens = self.tokens.new_tokens(account_id, answer, issued_at)
                await self.repo.insert_account(conn, account_id, state, user_id, username, tokens)
            events.append(
                AccountConnectedEvent(
                    workspace_id=state.workspace_id,
                    producer=PRODUCER,
                    payload=AccountConnected(
                        account_id=str(account_id),
                        profile_id=state.profile_id,
                        pinterest_user_id=user_id,
                        username=username,
                        reconnected=reconnected,
                    ),
                )
            )
            await self.repo.emit(conn, *events)
        return account_id, reconnected

    async def _initial_board_sync(self, account_id: uuid.UUID) -> bool:
        """Sync boards before redirecting, up to a time limit; a slow sync goes on in the
        background and the periodic worker picks it up if this process dies."""
        task = self._spawn(self.boards.sync_account(account_id), f"board-sync-{account_id}")
        done, _ = await asyncio.wait({task}, timeout=self._callback_sync_timeout)
        if task in done and not task.cancelled() and task.exception() is None:
            return bool(task.result())
        if task not in done:
            log.info("board_sync_continues_in_background", account_id=str(account_id))
        self._on_boards_requested()
        return False

    @staticmethod
    def _disconnected_event(row: AccountRow, parent: Any | None = None) -> AccountDisconnectedEvent:
        meta: dict[str, Any] = (
            caused_by(parent) if parent is not None else {"workspace_id": row.workspace_id}
        )
        return AccountDisconnectedEvent(
            **meta,
            producer=PRODUCER,
            payload=AccountDisconnected(account_id=str(row.id), profile_id=row.profile_id),
        )

    async def disconnect(self, conn: Conn, event: AccountDisconnectRequestedEvent) -> bool:
        """Destroy the profile's account and tokens; emit ``account.disconnected``.
        Runs inside the consumer's inbox transaction. False when nothing was connected."""
        row = await self.repo.lock_by_profile(conn, event.workspace_id, event.payload.profile_id)
        if row is None:
            log.info("disconnect_nothing_connected", profile_id=str(event.payload.profile_id))
            return False
        await self.repo.delete_account(conn, row.id)
        await self.repo.emit(conn, self._disconnected_event(row, event))
        log.info("account_disconnected", account_id=str(row.id), profile_id=str(row.profile_id))
        return True

    async def request_sync(self, conn: Conn, event: AccountSyncRequestedEvent) -> bool:
        """Make the profile's board sync due now (forced emit). Inside the inbox transaction."""
        row = await self.repo.lock_by_profile(conn, event.workspace_id, event.payload.profile_id)
        if row is None:
            log.info("sync_nothing_connected", profile_id=str(event.payload.profile_id))
            return False
        await self.repo.request_board_sync(conn, row.id)
        return True


# ---------------------------------------------------------------- loops


class Worker:
    """Runs ``step`` every ``interval`` seconds (sooner when woken); a full batch runs the
    next step at once. Errors are logged and retried with backoff, never fatal."""

    def __init__(
        self, name: str, step: Callable[[], Awaitable[int]], interval: float, batch: int
    ) -> None:
        self.name = name
        self._step = step
        self._interval = interval
        self._batch = batch
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        delay = 0.5
        while not self._stopping.is_set():
            self._wake.clear()
            self._idle.clear()
            try:
                done = await self._step()
                delay = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(f"{self.name}_error", error=str(exc)[:300], retry_in=delay)
                done = 0
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
            finally:
                self._idle.set()
            if done >= self._batch:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)

    async def stop(self, timeout: float) -> None:
        """Stop after the current step (waits up to ``timeout`` for it)."""
        self._stopping.set()
        self._wake.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)
