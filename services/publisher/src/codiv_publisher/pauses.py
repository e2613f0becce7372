"""Posts of accounts that need reauthorisation: pause, resume on reconnect, fail after grace."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable

import asyncpg
from codiv_common.db import Conn
from codiv_common.events import (
    AccountConnectedEvent,
    AccountDisconnectedEvent,
    Event,
    PostContent,
    PostDueEvent,
    PostError,
    PostFailed,
    PostFailedEvent,
    PostPaused,
    PostPausedEvent,
    PostResumed,
    PostResumedEvent,
    PostRetry,
    PostRetryEvent,
    caused_by,
)
from codiv_common.inbox import process_once
from codiv_common.logging import get_logger
from codiv_common.outbox import enqueue

from . import domain
from .adapters import pause_repo
from .adapters.pause_repo import PausedPost

log = get_logger(__name__)

PRODUCER = "publisher"
PAUSE_EVENTS = ("account.connected", "account.disconnected")
# A reconnect seen this long before a run started still counts as "after" it (app and
# database clocks may differ a little). Such a run comes back once, after this margin, so
# it cannot loop; a needless retry only costs one more attempt.
RECONNECT_MARGIN = dt.timedelta(seconds=2)
# Resumed posts are released this far apart so that the scheduler releases them in due order.
RESUME_SPACING = dt.timedelta(milliseconds=20)
RESUME_REASON = "The Pinterest account was reconnected: publishing resumes."
DISCONNECTED_MESSAGE = (
    "The post was paused because its Pinterest account needed reauthorisation, and the "
    "account was then disconnected. Connect an account and schedule the post again."
)

Handler = Callable[[Event], Awaitable[None]]


def grace_message(hours: float) -> str:
    return (
        f"The Pinterest account was not reconnected within {hours:g} hours of the post being "
        "paused. " + domain.reauth_message()
    )


async def pause_post(
    conn: Conn,
    schema: str,
    event: PostDueEvent,
    *,
    reason: str,
    run_started: dt.datetime,
    grace_hours: float,
) -> bool:
    """Pause the post of ``event`` (its account needs reauth) and emit ``post.paused``.

    False (nothing written) when the account was reconnected since the run started: the
    resume may not have seen this post, so the caller retries it instead.
    """
    p = event.payload
    account = p.content.pinterest_account_id or ""
    async with conn.transaction():
        await pause_repo.lock_account(conn, account)
        if await pause_repo.reconnected_since(conn, account, run_started - RECONNECT_MARGIN):
            return False
        paused_at = await pause_repo.mark_paused(
            conn,
            p.post_id,
            attempt=p.attempt,
            reason=reason,
            content=p.content.model_dump(mode="json"),
            correlation_id=event.correlation_id or event.event_id,
            due_at=p.due_at,
        )
        await enqueue(
            conn,
            schema,
            PostPausedEvent(
                **caused_by(event),
                producer=PRODUCER,
                payload=PostPaused(
                    post_id=p.post_id,
                    account_id=account,
                    attempt=p.attempt,
                    reason=(
                        "The Pinterest account needs to be reconnected "
                        f"({reason}). The post resumes when it is."
                    ),
                    paused_at=paused_at,
                    fail_at=paused_at + dt.timedelta(hours=grace_hours),
                ),
            ),
        )
    log.warning("post_paused", account_id=account, reason=reason)
    return True


def _failed(post: PausedPost, code: str, message: str, parent: Event | None) -> PostFailedEvent:
    return PostFailedEvent(
        workspace_id=post.workspace_id,
        correlation_id=post.correlation_id,
        causation_id=parent.event_id if parent is not None else None,
        producer=PRODUCER,
        payload=PostFailed(
            post_id=post.post_id,
            attempt=post.attempt,
            error=PostError(code=code, message=message, retryable=False),
        ),
    )


async def resume_account(
    conn: Conn, schema: str, event: AccountConnectedEvent, now: dt.datetime
) -> int:
    """Release the account's paused posts again, in due order (post.resumed + post.retry)."""
    account = event.payload.account_id
    await pause_repo.lock_account(conn, account)
    if event.payload.reconnected:  # a first connect has a new account id: nothing raced it
        await pause_repo.record_reconnect(conn, account)
    posts = await pause_repo.paused_of_account(conn, account)
    for i, post in enumerate(posts):
        retry_at = now + i * RESUME_SPACING
        envelope = {
            "workspace_id": post.workspace_id,
            "correlation_id": post.correlation_id,
            "causation_id": event.event_id,
            "producer": PRODUCER,
        }
        await pause_repo.mark_resumed(conn, post.post_id)
        await enqueue(
            conn,
            schema,
            PostResumedEvent(
                **envelope,
                payload=PostResumed(
                    post_id=post.post_id,
                    account_id=account,
                    attempt=post.next_attempt,
                    paused_at=post.paused_at,
                    retry_at=retry_at,
                ),
            ),
            PostRetryEvent(
                **envelope,
                payload=PostRetry(
                    post_id=post.post_id,
                    attempt=post.next_attempt,
                    retry_at=retry_at,
                    reason=RESUME_REASON,
                    content=PostContent.model_validate(post.content),
                    resumed=True,
                ),
            ),
        )
    return len(posts)


async def fail_disconnected(conn: Conn, schema: str, event: AccountDisconnectedEvent) -> int:
    """The account is gone: its paused posts can never resume; fail them now."""
    account = event.payload.account_id
    await pause_repo.lock_account(conn, account)
    posts = await pause_repo.paused_of_account(conn, account)
    for post in posts:
        await pause_repo.mark_failed(
            conn, post.post_id, "pinterest_account_not_connected", DISCONNECTED_MESSAGE
        )
        await enqueue(
            conn,
            schema,
            _failed(post, "pinterest_account_not_connected", DISCONNECTED_MESSAGE, event),
        )
    return len(posts)


async def fail_expired(
    pool: asyncpg.Pool, schema: str, grace_hours: float, batch: int = 100
) -> int:
    """One pass of the grace loop: fail posts paused longer than the grace period."""
    async with pool.acquire() as conn, conn.transaction():
        posts = await pause_repo.expired_paused(conn, dt.timedelta(hours=grace_hours), batch)
        message = grace_message(grace_hours)
        for post in posts:
            await pause_repo.mark_failed(conn, post.post_id, "pinterest_reauth_required", message)
            await enqueue(conn, schema, _failed(post, "pinterest_reauth_required", message, None))
    if posts:
        log.warning("paused_posts_expired", count=len(posts))
    return len(posts)


class PauseConsumer:
    """Queue `publisher`, routing keys `account.connected`, `account.disconnected`.

    On `account.connected` (a reconnect, or a first connect) the account's paused posts
    are released again in due order; on `account.disconnected` they fail. Idempotent
    through the inbox (consumer `publisher-pauses`): the event id is recorded in the same
    transaction as the changes and the outbox rows; acked after commit. Every event then
    goes on to the wrapped handler.
    """

    def __init__(
        self,
        pool: Callable[[], asyncpg.Pool],
        schema: str,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self._pool = pool
        self._schema = schema
        self._clock = clock

    async def handle(self, event: Event) -> None:
        if isinstance(event, AccountConnectedEvent):

            async def resume(conn: Conn) -> int:
                return await resume_account(conn, self._schema, event, self._clock())

            ran, count = await process_once(
                self._pool(), self._schema, "publisher-pauses", event.event_id, resume
            )
            if ran and count:
                log.info("paused_posts_resumed", account_id=event.payload.account_id, count=count)
        elif isinstance(event, AccountDisconnectedEvent):

            async def fail(conn: Conn) -> int:
                return await fail_disconnected(conn, self._schema, event)

            ran, count = await process_once(
                self._pool(), self._schema, "publisher-pauses", event.event_id, fail
            )
            if ran and count:
                log.warning("paused_posts_disconnected", count=count)

    def wrap(self, handler: Handler) -> Handler:
        """The queue's handler: account events here first, then every event to ``handler``."""

        async def handle(event: Event) -> None:
            if event.type in PAUSE_EVENTS:
                await self.handle(event)
            await handler(event)

        return handle


async def grace_loop(
    pool: Callable[[], asyncpg.Pool], schema: str, grace_hours: float, interval: float
) -> None:
    """Fail expired paused posts every ``interval`` seconds (any number of replicas)."""
    while True:
        try:
            while await fail_expired(pool(), schema, grace_hours) > 0:
                pass
        except Exception as exc:  # the next round retries; never kill the loop
            log.warning("pause_grace_failed", error=str(exc))
        await asyncio.sleep(interval)
