"""Analytics integration harness: the publisher's harness plus a queue of metrics events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import asyncpg
import pytest
from codiv_common.events import Event, decode_event

# The gateway's and the publisher's in-process harnesses, reused as they are.
from integration.gateway.conftest import gw, make_gateway  # noqa: F401
from integration.publisher.conftest import harness, publisher_settings  # noqa: F401


class MetricsTap:
    """Every pin.metrics / account.metrics the publisher emits, in arrival order."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def of(self, event_type: str, **payload: Any) -> list[Any]:
        return [
            e
            for e in self.events
            if e.type == event_type and all(getattr(e.payload, k) == v for k, v in payload.items())
        ]


@pytest.fixture
async def metrics_tap(broker: Any) -> AsyncIterator[MetricsTap]:
    tap = MetricsTap()
    connection = await aio_pika.connect_robust(broker.url)
    channel = await connection.channel()
    exchange = await channel.declare_exchange(
        broker.exchange, aio_pika.ExchangeType.TOPIC, durable=True
    )
    queue = await channel.declare_queue(f"{broker.queue_prefix}analytics", durable=True)
    for key in ("pin.metrics", "account.metrics"):
        await queue.bind(exchange, routing_key=key)

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        async with message.process():
            tap.events.append(decode_event(message.body))

    await queue.consume(on_message)
    yield tap
    await connection.close()


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url)
    yield conn
    await conn.close()
