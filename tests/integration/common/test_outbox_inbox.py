"""Outbox (every committed event exactly once, never a rolled-back one) and inbox."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter

import asyncpg
import pytest
from codiv_common import broker as b
from codiv_common.db import create_pool, migrate_dsn
from codiv_common.events import PostCancelled, PostCancelledEvent
from codiv_common.inbox import process_once, purge_processed
from codiv_common.metrics import Metrics
from codiv_common.outbox import OutboxRelay, enqueue
from codiv_common.runtime import SHARED_MIGRATIONS
from codiv_testsupport import wait_until

pytestmark = pytest.mark.integration
SCHEMA = "svc"


def _event() -> PostCancelledEvent:
    return PostCancelledEvent(
        workspace_id=uuid.uuid4(), payload=PostCancelled(post_id=uuid.uuid4())
    )


async def test_outbox_publishes_committed_events_exactly_once_with_two_relays(
    database_url: str, broker
) -> None:  # type: ignore[no-untyped-def]
    await migrate_dsn(database_url, SCHEMA, [SHARED_MIGRATIONS])
    pool = await create_pool(database_url, SCHEMA, max_size=6)
    conn = await b.connect(broker.url, name="test")
    try:
        ch = await conn.channel(publisher_confirms=True, on_return_raises=True)
        topo = b.Topology(exchange=broker.exchange, queue_prefix=broker.queue_prefix)
        exchange = await b.declare_exchanges(ch, topo)
        queue = await b.declare_queue(ch, topo, b.QueueSpec("test", ["post.cancelled"]))
        publisher = b.EventPublisher(exchange, confirm_timeout=5)
        relays = [
            OutboxRelay(
                pool=pool,
                dsn=database_url,
                schema=SCHEMA,
                publisher=publisher,
                metrics=Metrics("t"),
                batch_size=25,
                poll_interval=0.5,
            )
            for _ in range(2)
        ]
        tasks = [asyncio.create_task(r.run()) for r in relays]

        committed: list[PostCancelledEvent] = []
        rolled_back: list[PostCancelledEvent] = []

        async def writer(i: int) -> None:
            for j in range(50):
                events = [_event(), _event()]
                async with pool.acquire() as c:
                    tx = c.transaction()
                    await tx.start()
                    await enqueue(c, SCHEMA, *events)
                    if (i + j) % 5 == 0:
                        await tx.rollback()
                        rolled_back.extend(events)
                    else:
                        await tx.commit()
                        committed.extend(events)

        await asyncio.gather(*(writer(i) for i in range(4)))
        received: Counter[str] = Counter()

        async def all_received() -> bool:
            while (m := await queue.get(fail=False, no_ack=True)) is not None:
                received[json.loads(m.body)["event_id"]] += 1
            return sum(received.values()) >= len(committed)

        await wait_until(all_received, timeout=20)
        await asyncio.sleep(1.0)  # anything extra would arrive now
        await all_received()
        for r in relays:
            await r.stop()
        await asyncio.gather(*tasks)
        assert len(committed) == 320
        assert set(received) == {str(e.event_id) for e in committed}
        assert max(received.values()) == 1, "an event was published twice"
        assert not set(received) & {str(e.event_id) for e in rolled_back}
        assert await pool.fetchval("SELECT count(*) FROM svc.outbox") == 0
    finally:
        await conn.close()
        await pool.close()


async def test_relay_survives_broker_refusal_and_keeps_rows(database_url: str, broker) -> None:  # type: ignore[no-untyped-def]
    """An unroutable publish fails the batch: the rows stay for the next try, none lost."""
    await migrate_dsn(database_url, SCHEMA, [SHARED_MIGRATIONS])
    pool = await create_pool(database_url, SCHEMA)
    conn = await b.connect(broker.url, name="test")
    try:
        ch = await conn.channel(publisher_confirms=True, on_return_raises=True)
        topo = b.Topology(exchange=broker.exchange, queue_prefix=broker.queue_prefix)
        exchange = await b.declare_exchanges(ch, topo)
        relay = OutboxRelay(
            pool=pool,
            dsn=database_url,
            schema=SCHEMA,
            publisher=b.EventPublisher(exchange, confirm_timeout=5),
            metrics=Metrics("t"),
        )
        async with pool.acquire() as c, c.transaction():
            await enqueue(c, SCHEMA, _event())
        with pytest.raises(b.UnroutableError):
            await relay.publish_batch()
        assert await pool.fetchval("SELECT count(*) FROM svc.outbox") == 1
        await b.declare_queue(ch, topo, b.QueueSpec("test", ["post.cancelled"]))
        ch2 = await conn.channel(publisher_confirms=True, on_return_raises=True)
        relay._publisher = b.EventPublisher(  # the failed channel was closed by the broker
            await ch2.get_exchange(broker.exchange), confirm_timeout=5
        )
        assert await relay.publish_batch() == 1
        assert await pool.fetchval("SELECT count(*) FROM svc.outbox") == 0
    finally:
        await conn.close()
        await pool.close()


async def test_inbox_applies_a_duplicate_event_once(database_url: str) -> None:
    await migrate_dsn(database_url, SCHEMA, [SHARED_MIGRATIONS])
    pool = await create_pool(database_url, SCHEMA, max_size=10)
    try:
        await pool.execute("CREATE TABLE svc.counter (n int NOT NULL)")
        await pool.execute("INSERT INTO svc.counter VALUES (0)")
        event_id = uuid.uuid4()

        async def bump(c: asyncpg.Connection) -> int:
            await asyncio.sleep(0.05)  # widen the race window
            return int(await c.fetchval("UPDATE svc.counter SET n = n + 1 RETURNING n"))

        results = await asyncio.gather(
            *(process_once(pool, SCHEMA, "test", event_id, bump) for _ in range(8))
        )
        assert sum(1 for ran, _ in results if ran) == 1
        assert await pool.fetchval("SELECT n FROM svc.counter") == 1
        # another consumer of the same event has its own record
        ran, _ = await process_once(pool, SCHEMA, "other", event_id, bump)
        assert ran
    finally:
        await pool.close()


async def test_inbox_rolls_back_the_record_when_the_work_fails(database_url: str) -> None:
    await migrate_dsn(database_url, SCHEMA, [SHARED_MIGRATIONS])
    pool = await create_pool(database_url, SCHEMA)
    try:
        event_id = uuid.uuid4()

        async def boom(c: asyncpg.Connection) -> None:
            raise RuntimeError("fails after insert")

        with pytest.raises(RuntimeError):
            await process_once(pool, SCHEMA, "test", event_id, boom)

        async def ok(c: asyncpg.Connection) -> str:
            return "done"

        assert await process_once(pool, SCHEMA, "test", event_id, ok) == (True, "done")
    finally:
        await pool.close()


async def test_inbox_purge_forgets_only_old_event_ids(database_url: str) -> None:
    await migrate_dsn(database_url, SCHEMA, [SHARED_MIGRATIONS])
    pool = await create_pool(database_url, SCHEMA)
    try:
        old, recent = uuid.uuid4(), uuid.uuid4()
        await pool.execute(
            "INSERT INTO svc.processed_events (consumer, event_id, processed_at)"
            " VALUES ('c', $1, now() - interval '8 days'), ('c', $2, now())",
            old,
            recent,
        )
        assert await purge_processed(pool, SCHEMA, 7) == 1
        rows = await pool.fetch("SELECT event_id FROM svc.processed_events")
        assert [r["event_id"] for r in rows] == [recent]
    finally:
        await pool.close()
