"""AMQP entry points of the gateway service."""

from __future__ import annotations

from codiv_common.events import Event
from codiv_common.inbox import process_once
from codiv_common.logging import get_logger
from codiv_common.runtime import Runtime

log = get_logger(__name__)


class EventConsumer:
    """Consumer of queue `gateway`.

    Routing keys: `post.publishing`, `post.published`, `post.failed`,
    `post.change_rejected`, `account.*`, `pin.metrics`.

    Idempotent through the inbox: a redelivered event is recorded once and ignored
    after; the message is acked only after the transaction committed.
    """

    def __init__(self, runtime: Runtime, schema: str) -> None:
        self._runtime = runtime
        self._schema = schema

    async def handle(self, event: Event) -> None:
        async def work(_conn: object) -> None:
            log.info("event_received", type=event.type)

        await process_once(self._runtime.pool, self._schema, "gateway", event.event_id, work)
