"""Scheduler replicas as processes: each job released once, a SIGKILLed replica's batch too."""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import asyncpg
import pytest
from aio_pika.abc import AbstractIncomingMessage
from codiv_common import broker as b
from codiv_common.events import PostContent
from codiv_testsupport import wait_until

pytestmark = pytest.mark.e2e

CONTENT = PostContent(post_type="image", board_id="42", media_urls=["https://example.com/p.jpg"])


class DueProbe:
    """Counts post.due messages per post id and event id."""

    def __init__(self) -> None:
        self.events: dict[str, set[str]] = defaultdict(set)
        self.messages = 0

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        body = json.loads(message.body)
        self.events[body["payload"]["post_id"]].add(body["event_id"])
        self.messages += 1
        await message.ack()


@pytest.fixture
async def due_probe(broker: Any) -> AsyncIterator[DueProbe]:
    probe = DueProbe()
    connection = await aio_pika.connect_robust(broker.url)
    try:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=1000)
        topo = b.Topology(exchange=broker.exchange, queue_prefix=broker.queue_prefix)
        await b.declare_exchanges(channel, topo)
        queue = await b.declare_queue(channel, topo, b.QueueSpec("test", ["post.due"]))
        tag = await queue.consume(probe.on_message)
        yield probe
        await queue.cancel(tag)
    finally:
        await connection.close()


async def insert_due_jobs(database_url: str, count: int, first_due: datetime) -> None:
    """Write pending jobs straight into the scheduler's table and wake the replicas."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            """INSERT INTO scheduler.jobs
                 (post_id, workspace_id, state, due_at, attempt, content, changed_at)
               SELECT gen_random_uuid(), $1, 'pending',
                      $2::timestamptz + (i % 500) * interval '1 millisecond', 1, $3::jsonb, now()
               FROM generate_series(1, $4) AS i""",
            uuid.uuid4(),
            first_due,
            CONTENT.model_dump_json(),
            count,
        )
        await conn.execute("SELECT pg_notify('scheduler_jobs', $1)", str(first_due.timestamp()))
    finally:
        await conn.close()


async def released_by(database_url: str) -> dict[str | None, int]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT released_by, count(*) AS n FROM scheduler.jobs GROUP BY released_by"
        )
        return {r["released_by"]: r["n"] for r in rows}
    finally:
        await conn.close()


async def test_two_replicas_release_5000_jobs_each_exactly_once(
    spawn: Any, database_url: str, due_probe: DueProbe
) -> None:
    env = {"SCHEDULER_BATCH_SIZE": "100", "LOG_LEVEL": "WARNING"}
    replicas = [spawn("codiv-scheduler", SCHEDULER_REPLICA_ID=r, **env) for r in ("a", "b")]
    await asyncio.gather(*(r.wait_status("/readyz", timeout=30) for r in replicas))
    await insert_due_jobs(database_url, 5000, datetime.now(UTC) + timedelta(seconds=1))

    await wait_until(lambda: len(due_probe.events) >= 5000, timeout=60, interval=0.1)
    await asyncio.sleep(0.5)
    assert len(due_probe.events) == 5000, "none missed"
    assert due_probe.messages == 5000, "none published twice"
    assert all(len(ids) == 1 for ids in due_probe.events.values())
    by = await released_by(database_url)
    assert set(by) == {"a", "b"}, f"both replicas took part: {by}"
    assert sum(by.values()) == 5000


async def test_replica_killed_mid_batch_its_batch_is_released_once_by_the_other(
    spawn: Any, database_url: str, due_probe: DueProbe
) -> None:
    env = {"SCHEDULER_BATCH_SIZE": "200", "SCHEDULER_CONTENTION_BACKOFF_MAX": "0.2"}
    doomed = spawn("codiv-scheduler", SCHEDULER_REPLICA_ID="doomed",
                   SCHEDULER_FAULT_HOLD_BATCH="120", **env)  # fmt: skip
    await doomed.wait_status("/readyz", timeout=30)
    await insert_due_jobs(database_url, 1000, datetime.now(UTC) - timedelta(seconds=1))
    await wait_until(lambda: "release_batch_held" in doomed.logs(), timeout=15)

    survivor = spawn("codiv-scheduler", SCHEDULER_REPLICA_ID="survivor", **env)
    await survivor.wait_status("/readyz", timeout=30)
    # The survivor releases everything except the batch the doomed replica holds.
    await wait_until(lambda: len(due_probe.events) >= 800, timeout=30, interval=0.1)
    await asyncio.sleep(0.5)
    assert len(due_probe.events) == 800

    doomed.stop(signal.SIGKILL)
    await wait_until(lambda: len(due_probe.events) >= 1000, timeout=30, interval=0.1)
    await asyncio.sleep(0.5)
    assert len(due_probe.events) == 1000
    assert due_probe.messages == 1000
    assert all(len(ids) == 1 for ids in due_probe.events.values())
    assert await released_by(database_url) == {"survivor": 1000}
