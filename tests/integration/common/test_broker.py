"""Broker: confirms, unroutable messages, poison messages, consumer behaviour."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest
from codiv_common import broker as b
from codiv_common.events import Event, PostCancelled, PostCancelledEvent
from codiv_common.logging import configure_logging
from codiv_common.metrics import Metrics
from codiv_testsupport import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
async def connection(broker) -> AsyncIterator[aio_pika.abc.AbstractRobustConnection]:  # type: ignore[no-untyped-def]
    conn = await b.connect(broker.url, name="test")
    yield conn
    await conn.close()


@pytest.fixture
async def channel(connection) -> aio_pika.abc.AbstractChannel:  # type: ignore[no-untyped-def]
    return await connection.channel(publisher_confirms=True, on_return_raises=True)


def _event() -> PostCancelledEvent:
    return PostCancelledEvent(
        workspace_id=uuid.uuid4(), payload=PostCancelled(post_id=uuid.uuid4())
    )


async def test_publishing_to_a_queueless_routing_key_raises(broker, channel) -> None:  # type: ignore[no-untyped-def]
    topo = b.Topology(exchange=broker.exchange, queue_prefix=broker.queue_prefix)
    exchange = await b.declare_exchanges(channel, topo)
    pub = b.EventPublisher(exchange, confirm_timeout=5)
    with pytest.raises(b.UnroutableError):
        await pub.publish(_event())
    # bound now: the same publish succeeds
    await b.declare_queue(channel, topo, b.QueueSpec("test", ["post.cancelled"]))
    await pub.publish(_event())


async def test_poison_message_is_dead_lettered_and_consumer_goes_on(
    broker, connection, channel, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    configure_logging("INFO", "json")
    topo = b.Topology(exchange=broker.exchange, queue_prefix=broker.queue_prefix, delivery_limit=3)
    spec = b.QueueSpec("test", ["post.cancelled"], prefetch=4)
    exchange = await b.declare_exchanges(channel, topo)
    queue = await b.declare_queue(channel, topo, spec)
    handled: list[Event] = []

    async def handler(event: Event) -> None:
        if event.payload.post_id == bad_post:  # type: ignore[union-attr]
            raise RuntimeError("handler bug for this one")
        handled.append(event)

    bad_post = uuid.uuid4()
    consume_channel = await connection.channel()
    await consume_channel.set_qos(prefetch_count=spec.prefetch)
    cq = await consume_channel.get_queue(queue.name)
    consumer = b.Consumer(
        name="test",
        channel=consume_channel,
        queue=cq,
        handler=handler,
        dead_letter_exchange=await channel.get_exchange(topo.dead_letter_exchange),
        metrics=Metrics("test"),
        delivery_limit=3,
    )
    await consumer.start()
    # 1: not JSON at all; 2: a valid envelope whose handler always fails; 3: a good one
    await exchange.publish(aio_pika.Message(b"not json", message_id="junk"), "post.cancelled")
    failing = PostCancelledEvent(workspace_id=uuid.uuid4(), payload=PostCancelled(post_id=bad_post))
    pub = b.EventPublisher(exchange, confirm_timeout=5)
    await pub.publish(failing)
    good = _event()
    await pub.publish(good)

    await wait_until(lambda: any(e.event_id == good.event_id for e in handled), timeout=10)
    dead = await channel.get_queue(f"{queue.name}.dead")
    got: list[aio_pika.abc.AbstractIncomingMessage] = []

    async def two_dead() -> bool:
        msg = await dead.get(fail=False, no_ack=True)
        if msg is not None:
            got.append(msg)
        return len(got) >= 2

    await wait_until(two_dead, timeout=15)
    reasons = {m.message_id: m.headers[b.DEAD_REASON_HEADER] for m in got}
    assert "invalid envelope" in str(reasons["junk"])
    assert "handler failed 3 times" in str(reasons[str(failing.event_id)])
    await consumer.stop(5)
    err = capsys.readouterr().err
    assert "message_dead_lettered" in err
    # the good message was handled exactly once, the failing one never
    assert [e.event_id for e in handled] == [good.event_id]


async def test_consumer_stop_waits_for_inflight_and_leaves_rest_unacked(
    broker, connection, channel
) -> None:  # type: ignore[no-untyped-def]
    topo = b.Topology(exchange=broker.exchange, queue_prefix=broker.queue_prefix)
    spec = b.QueueSpec("test", ["post.cancelled"], prefetch=1)
    exchange = await b.declare_exchanges(channel, topo)
    queue = await b.declare_queue(channel, topo, spec)
    started = asyncio.Event()
    finished: list[uuid.UUID] = []

    async def slow(event: Event) -> None:
        started.set()
        await asyncio.sleep(0.5)
        finished.append(event.event_id)

    cch = await connection.channel()
    await cch.set_qos(prefetch_count=1)
    consumer = b.Consumer(
        name="t",
        channel=cch,
        queue=await cch.get_queue(queue.name),
        handler=slow,
        dead_letter_exchange=await channel.get_exchange(topo.dead_letter_exchange),
        metrics=Metrics("t"),
    )
    await consumer.start()
    pub = b.EventPublisher(exchange, confirm_timeout=5)
    events = [_event() for _ in range(3)]
    for e in events:
        await pub.publish(e)
    await asyncio.wait_for(started.wait(), 5)
    await consumer.stop(5)
    assert len(finished) == 1
    await cch.close()
    # the two not started are still in the queue, none lost
    remaining: list[str] = []

    async def drained() -> bool:
        m = await queue.get(fail=False, no_ack=True)
        if m is not None:
            remaining.append(json.loads(m.body)["event_id"])
        return len(remaining) >= 2

    await wait_until(drained, timeout=10)
    assert sorted(remaining) == sorted(str(e.event_id) for e in events[1:])
