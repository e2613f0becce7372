"""AMQP entry points of the gateway service."""

from __future__ import annotations

import json
import uuid

from aio_pika.abc import AbstractIncomingMessage
from codiv_common.broker import PermanentError
from codiv_common.db import Conn
from codiv_common.events import Event
from codiv_common.inbox import process_once
from codiv_common.logging import get_logger
from codiv_common.runtime import Runtime

from .service import GatewayService
from .webhook_api import enqueue_deliveries

log = get_logger(__name__)


class EventConsumer:
    """Consumer of queue `gateway`: keeps the posts and accounts read model current.

    Routing keys: `post.due`, `post.retry`, `post.publishing`, `post.published`,
    `post.failed`, `post.change_rejected`, `post.paused`, `post.resumed`, `account.*`,
    `pin.metrics`. Webhook deliveries for the event are inserted in the same transaction.

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
            await enqueue_deliveries(conn, event)  # webhooks: rows only, sent by a worker

        ran, _ = await process_once(
            self._runtime.pool, self._schema, "gateway", event.event_id, work
        )
        log.info("event_applied" if ran else "event_duplicate", type=event.type)


class IngestConsumer:
    """Consumer of queue `gateway.ingest` (exchange `<exchange>.ingest`, key `post.requested`).

    Internal producers publish their posts here (see ``codiv_common.producer``). The
    producer's identity is the AMQP ``user_id`` property, which RabbitMQ verifies
    against the connection's user; it must be allowed for the envelope's workspace in
    ``INGEST_PRODUCERS``. An envelope that cannot be tied to a workspace, or comes from a
    producer not allowed for it, is dead-lettered with the reason and changes nothing.
    A submission that breaks a rule becomes a failed post with the reason. Idempotent by
    event id (inbox) and by the producer's post id.
    """

    def __init__(self, runtime: Runtime, schema: str, service: GatewayService) -> None:
        self._runtime = runtime
        self._schema = schema
        self._service = service

    async def handle(self, message: AbstractIncomingMessage) -> None:
        try:
            envelope = json.loads(message.body)
        except ValueError:
            raise PermanentError("not a JSON envelope") from None
        if not isinstance(envelope, dict):
            raise PermanentError("the envelope must be a JSON object")
        if envelope.get("type") != "post.requested":
            raise PermanentError(f"unsupported event type {envelope.get('type')!r}")
        try:
            workspace_id = uuid.UUID(str(envelope.get("workspace_id")))
            event_id = uuid.UUID(str(envelope.get("event_id")))
        except ValueError:
            raise PermanentError("workspace_id and event_id must be UUIDs") from None
        producer = message.user_id
        if not self._service.producer_allowed(producer, workspace_id):
            raise PermanentError(
                f"producer {producer!r} may not post for workspace {workspace_id}"
                " (set the AMQP user_id and list it in INGEST_PRODUCERS)"
            )
        assert producer is not None
        payload = envelope.get("payload")

        async def work(conn: Conn) -> str:
            try:
                return await self._service.ingest_post(
                    conn, workspace_id, event_id, payload, producer
                )
            except LookupError as exc:
                raise PermanentError(str(exc)) from None

        ran, outcome = await process_once(
            self._runtime.pool, self._schema, "gateway-ingest", event_id, work
        )
        log.info("producer_post", outcome=outcome if ran else "duplicate_event", producer=producer)
