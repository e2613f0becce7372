"""AMQP entry points of the gateway service."""

from __future__ import annotations

from codiv_common.db import Conn
from codiv_common.events import Event
from codiv_common.inbox import process_once
from codiv_common.logging import get_logger
from codiv_common.runtime import Runtime

from .service import GatewayService

log = get_logger(__name__)


class EventConsumer:
    """Consumer of queue `gateway`: keeps the posts and accounts read model current.

    Routing keys: `post.due`, `post.retry`, `post.publishing`, `post.published`,
    `post.failed`, `post.change_rejected`, `account.*`, `pin.metrics`.

    Idempotent through the inbox: the event id is recorded in the same transaction as
    the read-model change, so a redelivered event changes nothing; the message is acked
    only after that transaction committed. Out-of-order safe: a final post status is
    never overwritten by an older event, and an account event older than the last one
    applied to that profile is ignored. Events for unknown posts or profiles (another
    workspace, a deleted profile) are recorded and ignored.
    """

    def __init__(self, runtime: Runtime, schema: str, service: GatewayService) -> None:
        self._runtime = runtime
        self._schema = schema
        self._service = service

    async def handle(self, event: Event) -> None:
        async def work(conn: Conn) -> None:
            await self._service.apply_event(conn, event)

        ran, _ = await process_once(
            self._runtime.pool, self._schema, "gateway", event.event_id, work
        )
        log.info("event_applied" if ran else "event_duplicate", type=event.type)
