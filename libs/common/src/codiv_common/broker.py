"""RabbitMQ through aio-pika: topology, a confirming publisher and a safe consumer wrapper."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import asyncpg
import pydantic
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)

from .events import EnvelopeBase, Event, UnsupportedEventVersion, decode_event, encode_event
from .logging import bind_context, get_logger
from .metrics import Metrics

log = get_logger(__name__)

DEAD_REASON_HEADER = "x-codiv-dead-reason"
INGEST_SUFFIX = ".ingest"


class PermanentError(Exception):
    """Raised by a handler for a message that can never succeed: it is dead-lettered at once."""


class UnroutableError(Exception):
    """A published message matched no queue; it was not delivered anywhere."""


@dataclass(frozen=True)
class QueueSpec:
    """One consuming service's durable quorum queue and the routing keys bound to it."""

    name: str
    routing_keys: Sequence[str]
    prefetch: int = 32
    exchange_suffix: str = ""
    """Bind to ``<exchange><suffix>`` instead of the main exchange (e.g. ``.ingest``)."""


@dataclass(frozen=True)
class Topology:
    """Names derived from settings: one topic exchange, its dead-letter exchange, queues."""

    exchange: str
    queue_prefix: str = ""
    delivery_limit: int = 10
    queues: Sequence[QueueSpec] = field(default_factory=tuple)

    @property
    def dead_letter_exchange(self) -> str:
        return f"{self.exchange}.dlx"

    @property
    def ingest_exchange(self) -> str:
        """Where internal producers publish (see :mod:`codiv_common.producer`)."""
        return f"{self.exchange}{INGEST_SUFFIX}"

    def queue_name(self, spec: QueueSpec) -> str:
        return f"{self.queue_prefix}{spec.name}"


async def connect(url: str, *, name: str) -> AbstractRobustConnection:
    """``connect_robust``: reconnects and restores topology and consumers by itself."""
    return await aio_pika.connect_robust(url, client_properties={"connection_name": name})


async def declare_exchanges(channel: AbstractChannel, topology: Topology) -> AbstractExchange:
    """Declare the durable topic exchange and its dead-letter exchange; return the former."""
    exchange = await channel.declare_exchange(
        topology.exchange, aio_pika.ExchangeType.TOPIC, durable=True
    )
    await channel.declare_exchange(
        topology.dead_letter_exchange, aio_pika.ExchangeType.DIRECT, durable=True
    )
    if any(q.exchange_suffix for q in topology.queues):
        for suffix in {q.exchange_suffix for q in topology.queues if q.exchange_suffix}:
            await channel.declare_exchange(
                topology.exchange + suffix, aio_pika.ExchangeType.TOPIC, durable=True
            )
    return exchange


async def declare_queue(
    channel: AbstractChannel, topology: Topology, spec: QueueSpec
) -> AbstractQueue:
    """Declare ``spec``'s quorum queue (with DLX and delivery limit) and its ``.dead`` queue."""
    name = topology.queue_name(spec)
    dead = await channel.declare_queue(
        f"{name}.dead", durable=True, arguments={"x-queue-type": "quorum"}
    )
    await dead.bind(topology.dead_letter_exchange, routing_key=name)
    queue = await channel.declare_queue(
        name,
        durable=True,
        arguments={
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": topology.dead_letter_exchange,
            "x-dead-letter-routing-key": name,
            "x-delivery-limit": topology.delivery_limit,
        },
    )
    for key in spec.routing_keys:
        await queue.bind(topology.exchange + spec.exchange_suffix, routing_key=key)
    return queue


class EventPublisher:
    """Publishes envelopes: persistent, mandatory, confirmed within a timeout.

    The channel must have been opened with ``publisher_confirms=True`` and
    ``on_return_raises=True``; a message that no queue takes raises
    :class:`UnroutableError` instead of vanishing.
    """

    def __init__(
        self, exchange: AbstractExchange, *, confirm_timeout: float, metrics: Metrics | None = None
    ) -> None:
        self._exchange = exchange
        self._timeout = confirm_timeout
        self._metrics = metrics

    async def publish(self, event: EnvelopeBase) -> None:
        """Publish one typed envelope (routing key = its type)."""
        event_type: str = getattr(event, "type")  # noqa: B009 - every concrete envelope has it
        await self.publish_raw(event_type, str(event.event_id), encode_event(event))

    async def publish_raw(self, routing_key: str, message_id: str, body: bytes) -> None:
        """Publish an already-encoded envelope."""
        message = aio_pika.Message(
            body,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message_id,
            type=routing_key,
        )
        try:
            await self._exchange.publish(
                message, routing_key=routing_key, mandatory=True, timeout=self._timeout
            )
        except aio_pika.exceptions.DeliveryError as exc:
            returned = exc.message is not None and getattr(exc.frame, "name", "") != "Basic.Nack"
            if returned:
                raise UnroutableError(f"no queue is bound for routing key {routing_key!r}") from exc
            raise
        if self._metrics:
            self._metrics.messages_published.labels(routing_key).inc()


Handler = Callable[[Event], Awaitable[None]]
RawHandler = Callable[[AbstractIncomingMessage], Awaitable[None]]
"""A handler that decodes the message itself (e.g. to read its ``user_id``)."""

# Errors that mean "our infrastructure is down", not "this message is bad": the consumer
# waits and tries the same message again instead of spending its delivery budget.
TRANSIENT_INFRA_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ConnectionError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
)


class Consumer:
    """Consumes one queue with bounded concurrency and safe acknowledgement.

    - The envelope is decoded and validated first; an undecodable message is a poison
      message: it is published to the dead-letter exchange with the reason in the
      ``x-codiv-dead-reason`` header, logged, and acked.
    - The handler runs with ``event_id``/``event_type`` bound to the log context. It
      must do its writes in its own transaction (with :func:`codiv_common.inbox.process_once`
      for idempotency); the message is acked only after the handler returned, i.e. after
      that transaction committed.
    - :class:`PermanentError` from the handler dead-letters at once with the reason.
    - Infrastructure errors (database or network down) are retried in place with
      backoff for up to ``infra_retry_for`` seconds, then the message is requeued.
    - Any other exception requeues the message; the quorum queue's delivery limit
      dead-letters it after repeated failures, so a poison message cannot loop forever.
    """

    def __init__(
        self,
        *,
        name: str,
        channel: AbstractChannel,
        queue: AbstractQueue,
        handler: Handler | None = None,
        raw_handler: RawHandler | None = None,
        dead_letter_exchange: AbstractExchange,
        metrics: Metrics,
        delivery_limit: int = 10,
        infra_retry_for: float = 60.0,
    ) -> None:
        self.name = name
        self._channel = channel
        self._queue = queue
        if (handler is None) == (raw_handler is None):
            raise ValueError("give exactly one of handler and raw_handler")
        self._handler = handler
        self._raw_handler = raw_handler
        self._dlx = dead_letter_exchange
        self._metrics = metrics
        self._infra_retry_for = infra_retry_for
        self._delivery_limit = delivery_limit
        self._tag: str | None = None
        self._inflight: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self._idle = asyncio.Event()
        self._idle.set()

    async def start(self) -> None:
        """Start consuming (the channel's QoS must already be set)."""
        self._tag = await self._queue.consume(self._on_message)

    async def stop(self, timeout: float) -> None:
        """Stop taking messages and wait up to ``timeout`` for in-flight ones to finish.

        Messages still unfinished at the deadline are left unacked: the broker
        redelivers them when the channel closes.
        """
        self._stopping = True
        if self._tag is not None:
            try:
                await self._queue.cancel(self._tag)
            except Exception as exc:  # channel already gone: nothing to cancel
                log.warning("consumer_cancel_failed", consumer=self.name, error=str(exc))
            self._tag = None
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            log.warning("consumer_stop_timeout", consumer=self.name, inflight=len(self._inflight))

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        self._idle.clear()
        try:
            await self._process(message)
        finally:
            if task is not None:
                self._inflight.discard(task)
            if not self._inflight:
                self._idle.set()

    async def _process(self, message: AbstractIncomingMessage) -> None:
        queue = self._queue.name
        started = time.perf_counter()
        call: Callable[[], Awaitable[None]]
        if self._raw_handler is not None:
            raw = self._raw_handler
            event_type = message.routing_key or "unknown"
            bind_context(message_id=message.message_id, event_type=event_type)

            def call() -> Awaitable[None]:
                return raw(message)
        else:
            try:
                event = decode_event(message.body)
            except (pydantic.ValidationError, UnsupportedEventVersion, ValueError) as exc:
                await self._dead_letter(message, f"invalid envelope: {_short(exc)}", "unknown")
                return
            bind_context(event_id=str(event.event_id), event_type=event.type)
            if hasattr(event.payload, "post_id"):
                bind_context(post_id=str(event.payload.post_id))
            event_type = event.type
            handler = self._handler
            assert handler is not None

            def call() -> Awaitable[None]:
                return handler(event)

        deadline = time.monotonic() + self._infra_retry_for
        delay = 0.2
        while True:
            try:
                await call()
            except PermanentError as exc:
                await self._dead_letter(message, str(exc), event_type)
                return
            except TRANSIENT_INFRA_ERRORS as exc:
                if self._stopping or time.monotonic() > deadline:
                    log.warning("message_requeued", reason=_short(exc), queue=queue)
                    self._metrics.messages_consumed.labels(queue, event_type, "retry").inc()
                    await message.nack(requeue=True)
                    return
                log.warning("message_infra_retry", reason=_short(exc), delay=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            except Exception as exc:
                deliveries = _delivery_count(message) + 1
                log.exception("message_handler_failed", queue=queue, deliveries=deliveries)
                if deliveries >= self._delivery_limit:
                    reason = f"handler failed {deliveries} times, last: {_short(exc)}"
                    await self._dead_letter(message, reason, event_type)
                    return
                self._metrics.messages_consumed.labels(queue, event_type, "retry").inc()
                await message.nack(requeue=True)
                return
            break
        await message.ack()
        self._metrics.messages_consumed.labels(queue, event_type, "ack").inc()
        self._metrics.message_latency.labels(queue, event_type).observe(
            time.perf_counter() - started
        )

    async def _dead_letter(
        self, message: AbstractIncomingMessage, reason: str, event_type: str
    ) -> None:
        log.error(
            "message_dead_lettered",
            queue=self._queue.name,
            reason=reason,
            message_id=message.message_id,
        )
        headers = dict(message.headers or {})
        headers[DEAD_REASON_HEADER] = reason[:1000]
        headers["x-codiv-original-routing-key"] = message.routing_key or ""
        await self._dlx.publish(
            aio_pika.Message(
                message.body,
                headers=headers,
                content_type=message.content_type,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=message.message_id,
            ),
            routing_key=self._queue.name,
            mandatory=True,
        )
        await message.ack()
        self._metrics.messages_consumed.labels(self._queue.name, event_type, "dead").inc()


def _delivery_count(message: AbstractIncomingMessage) -> int:
    value = (message.headers or {}).get("x-delivery-count", 0)
    return value if isinstance(value, int) else 0


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 500 else text[:497] + "..."
