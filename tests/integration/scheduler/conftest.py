"""Scheduler integration fixtures: the service in-process, a probe queue on the test exchange."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import asyncpg
import pytest
from aio_pika.abc import AbstractIncomingMessage
from codiv_common import broker as b
from codiv_common.db import migrate_dsn
from codiv_common.events import (
    Event,
    PostCancelled,
    PostCancelledEvent,
    PostContent,
    PostRequested,
    PostRequestedEvent,
    PostRescheduled,
    PostRescheduledEvent,
    PostRetry,
    PostRetryEvent,
    decode_event,
)
from codiv_common.runtime import SHARED_MIGRATIONS, Runtime
from codiv_scheduler.app import SCHEMA, SPEC, create_runtime
from codiv_scheduler.settings import Settings
from codiv_testsupport import wait_until

WS = uuid.UUID("00000000-0000-4000-8000-00000000abcd")
CONTENT = PostContent(post_type="image", board_id="123", media_urls=["https://example.com/a.jpg"])


def now() -> datetime:
    return datetime.now(UTC)


def at(seconds: float) -> datetime:
    return now() + timedelta(seconds=seconds)


def requested(post_id: uuid.UUID, due: datetime | None) -> PostRequestedEvent:
    return PostRequestedEvent(
        workspace_id=WS,
        producer="gateway",
        payload=PostRequested(
            post_id=post_id, profile_name="main", scheduled_at=due, content=CONTENT
        ),
    )


def rescheduled(post_id: uuid.UUID, due: datetime | None, revision: int) -> PostRescheduledEvent:
    return PostRescheduledEvent(
        workspace_id=WS,
        payload=PostRescheduled(post_id=post_id, scheduled_at=due, revision=revision),
    )


def cancelled(post_id: uuid.UUID) -> PostCancelledEvent:
    return PostCancelledEvent(workspace_id=WS, payload=PostCancelled(post_id=post_id))


def retry(post_id: uuid.UUID, attempt: int, due: datetime) -> PostRetryEvent:
    return PostRetryEvent(
        workspace_id=WS,
        payload=PostRetry(
            post_id=post_id, attempt=attempt, retry_at=due, reason="429", content=CONTENT
        ),
    )


class Probe:
    """Publishes commands to the test exchange and records post.due / post.change_rejected."""

    def __init__(self, db: asyncpg.Pool) -> None:
        self.db = db
        self.received: list[tuple[float, Event]] = []
        self._publisher: b.EventPublisher | None = None

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        self.received.append((time.time(), decode_event(message.body)))
        await message.ack()

    async def publish(self, event: Event) -> None:
        assert self._publisher is not None
        await self._publisher.publish(event)

    async def apply(self, event: Event, timeout: float = 10.0) -> None:
        """Publish and wait until the scheduler committed it (one at a time: ordered)."""
        await self.publish(event)

        async def done() -> bool:
            return bool(
                await self.db.fetchval(
                    "SELECT true FROM scheduler.processed_events WHERE event_id = $1",
                    event.event_id,
                )
            )

        await wait_until(done, timeout=timeout, interval=0.01)

    def of_type(self, type_: str) -> list[tuple[float, Any]]:
        return [(t, e) for t, e in self.received if e.type == type_]

    def dues(self, post_id: uuid.UUID | None = None) -> list[tuple[float, Any]]:
        return [
            (t, e)
            for t, e in self.of_type("post.due")
            if post_id is None or e.payload.post_id == post_id
        ]

    async def wait_dues(self, count: int, timeout: float = 10.0) -> list[tuple[float, Any]]:
        await wait_until(lambda: len(self.dues()) >= count, timeout=timeout, interval=0.005)
        return self.dues()

    async def job(self, post_id: uuid.UUID) -> asyncpg.Record | None:
        return await self.db.fetchrow("SELECT * FROM scheduler.jobs WHERE post_id = $1", post_id)


@pytest.fixture
def settings(database_url: str, broker: Any) -> Settings:
    return Settings(
        database_url=database_url,
        amqp_url=broker.url,
        amqp_exchange=broker.exchange,
        amqp_queue_prefix=broker.queue_prefix,
        scheduler_pending_sample_interval=0.2,
        database_pool_max=5,
    )


RunScheduler = Callable[..., AbstractAsyncContextManager[Runtime]]


@pytest.fixture
def run_scheduler(settings: Settings) -> RunScheduler:
    """``async with run_scheduler(**overrides) as runtime:`` the service, ready, in-process."""

    @asynccontextmanager
    async def _run(**overrides: Any) -> AsyncIterator[Runtime]:
        s = settings.model_copy(update=overrides) if overrides else settings
        runtime = create_runtime(s)
        await runtime.start()
        try:
            await runtime.wait_ready(30)
            yield runtime
        finally:
            await runtime.stop()

    return _run


@pytest.fixture
async def probe(broker: Any, database_url: str) -> AsyncIterator[Probe]:
    """A queue `<prefix>test` bound to post.due and post.change_rejected, and a publisher.

    The scheduler's schema is migrated first (as the service does) so tests can read it.
    """
    await migrate_dsn(database_url, SCHEMA, [SHARED_MIGRATIONS, SPEC.migrations])
    db = await asyncpg.create_pool(database_url, min_size=1, max_size=3)
    assert db is not None
    connection = await aio_pika.connect_robust(broker.url)
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        topo = b.Topology(exchange=broker.exchange, queue_prefix=broker.queue_prefix)
        exchange = await b.declare_exchanges(channel, topo)
        queue = await b.declare_queue(
            channel, topo, b.QueueSpec("test", ["post.due", "post.change_rejected"])
        )
        p = Probe(db)
        p._publisher = b.EventPublisher(exchange, confirm_timeout=5)
        consume_channel = await connection.channel()
        await consume_channel.set_qos(prefetch_count=500)
        q = await consume_channel.get_queue(queue.name)
        tag = await q.consume(p.on_message)
        yield p
        await q.cancel(tag)
    finally:
        await connection.close()
        await db.close()


def sleep_until(when: datetime) -> Awaitable[None]:
    return asyncio.sleep(max(0.0, (when - now()).total_seconds()))


class Helpers:
    """Event builders and clock helpers, handed to tests by the ``h`` fixture."""

    WS = WS
    CONTENT = CONTENT
    now = staticmethod(now)
    at = staticmethod(at)
    requested = staticmethod(requested)
    rescheduled = staticmethod(rescheduled)
    cancelled = staticmethod(cancelled)
    retry = staticmethod(retry)
    sleep_until = staticmethod(sleep_until)


@pytest.fixture
def h() -> type[Helpers]:
    return Helpers
