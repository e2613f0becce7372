"""A service's resources (pool, broker, outbox relay, consumers, loops) and their lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractRobustConnection

from . import broker
from .broker import Consumer, EventPublisher, Handler, QueueSpec, RawHandler, Topology
from .db import create_pool, migrate_dsn
from .inbox import purge_processed
from .logging import get_logger
from .metrics import Metrics
from .outbox import OutboxRelay
from .settings import ServiceSettings

log = get_logger(__name__)

SHARED_MIGRATIONS = Path(__file__).parent / "migrations"


class NotReady(Exception):
    """A dependency (database or broker) is not available yet."""


@dataclass(frozen=True)
class ServiceSpec:
    """What a service is: its name, its schema, its migrations and its queue."""

    name: str
    schema: str
    migrations: Path | None = None
    queue: QueueSpec | None = None
    with_outbox: bool = True
    extra_queues: tuple[QueueSpec, ...] = ()
    """Further queues, each consumed by a raw handler (see :meth:`Runtime.set_raw_handler`)."""


async def migrate_service(dsn: str, spec: ServiceSpec) -> list[int]:
    """Apply a service's migrations: the shared outbox/inbox ones, then its own."""
    dirs = [SHARED_MIGRATIONS] if spec.with_outbox else []
    if spec.migrations is not None:
        dirs.append(spec.migrations)
    return await migrate_dsn(dsn, spec.schema, dirs)


ReadyHook = Callable[["Runtime"], Awaitable[None]]
StopHook = Callable[[], Awaitable[None]]


class Runtime:
    """Owns one service process' connections and background work.

    :meth:`start` returns at once; a background task connects to PostgreSQL and
    RabbitMQ with retries, migrates, declares the topology, starts the outbox relay,
    the consumer and the ``on_ready`` hooks, in that order. Until then :attr:`pool`
    raises :class:`NotReady` and ``/readyz`` answers 503. :meth:`stop` shuts down in
    reverse: consumer first (in-flight messages finish), then loops, relay, broker, pool.
    """

    def __init__(self, settings: ServiceSettings, spec: ServiceSpec, metrics: Metrics) -> None:
        self.settings = settings
        self.spec = spec
        self.metrics = metrics
        self.topology = Topology(
            exchange=settings.amqp_exchange,
            queue_prefix=settings.amqp_queue_prefix,
            delivery_limit=settings.amqp_delivery_limit,
            queues=((spec.queue,) if spec.queue else ()) + spec.extra_queues,
        )
        self._pool: asyncpg.Pool | None = None
        self._connection: AbstractRobustConnection | None = None
        self._publish_channel: AbstractChannel | None = None
        self._publisher: EventPublisher | None = None
        self._exchange: AbstractExchange | None = None
        self.relay: OutboxRelay | None = None
        self._consumers: list[Consumer] = []
        self._handler: Handler | None = None
        self._raw_handlers: dict[str, RawHandler] = {}
        self._ready_hooks: list[ReadyHook] = []
        self._stop_hooks: list[StopHook] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._bootstrap: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()
        self._stopping = False

    # ------------------------------------------------------------------ wiring

    def set_handler(self, handler: Handler) -> None:
        """The function that handles each message of this service's queue."""
        self._handler = handler

    def set_raw_handler(self, queue: str, handler: RawHandler) -> None:
        """The function that handles each raw message of extra queue ``queue``."""
        self._raw_handlers[queue] = handler

    def on_ready(self, hook: ReadyHook) -> None:
        """Run ``hook(runtime)`` once the database and broker are up (e.g. start loops)."""
        self._ready_hooks.append(hook)

    def on_stop(self, hook: StopHook) -> None:
        """Run ``hook()`` at shutdown, after the consumer stopped and before pools close."""
        self._stop_hooks.append(hook)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Start a background task that lives until shutdown (a reference is kept)."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None and not self._stopping:
            log.error("background_task_crashed", task=task.get_name(), error=str(task.exception()))

    # ------------------------------------------------------------------ resources

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise NotReady("database not connected yet")
        return self._pool

    @property
    def publisher(self) -> EventPublisher:
        if self._publisher is None:
            raise NotReady("broker not connected yet")
        return self._publisher

    @property
    def connection(self) -> AbstractRobustConnection:
        if self._connection is None:
            raise NotReady("broker not connected yet")
        return self._connection

    @property
    def dsn(self) -> str:
        return self.settings.database_url.get_secret_value()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Begin connecting in the background; returns immediately."""
        self._bootstrap = asyncio.create_task(self._connect_loop(), name="bootstrap")

    async def wait_ready(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self.ready.wait(), timeout)

    async def _connect_loop(self) -> None:
        delay = 0.2
        while not self._stopping:
            try:
                await self._connect()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("dependencies_unavailable", error=str(exc), retry_in=round(delay, 2))
                await self._close_resources()
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.dependency_retry_max_delay)
                continue
            self.ready.set()
            self.metrics.ready.set(1)
            log.info("service_ready", service=self.spec.name)
            return

    async def _connect(self) -> None:
        s = self.settings
        await migrate_service(self.dsn, self.spec)
        self._pool = await create_pool(
            self.dsn,
            self.spec.schema,
            min_size=s.database_pool_min,
            max_size=s.database_pool_max,
        )
        self._connection = await broker.connect(
            s.amqp_url.get_secret_value(), name=f"codiv-{self.spec.name}"
        )
        self._publish_channel = await self._connection.channel(
            publisher_confirms=True, on_return_raises=True
        )
        self._exchange = await broker.declare_exchanges(self._publish_channel, self.topology)
        self._publisher = EventPublisher(
            self._exchange, confirm_timeout=s.amqp_confirm_timeout, metrics=self.metrics
        )
        if self.spec.with_outbox:
            self.relay = OutboxRelay(
                pool=self._pool,
                dsn=self.dsn,
                schema=self.spec.schema,
                publisher=self._publisher,
                metrics=self.metrics,
                batch_size=s.outbox_batch_size,
                poll_interval=s.outbox_poll_interval,
            )
            self.spawn(self.relay.run(), "outbox-relay")
        if self.spec.with_outbox:
            self.spawn(self._purge_inbox(), "inbox-purge")
        if self.spec.queue is not None:
            if self._handler is None:
                raise RuntimeError(f"{self.spec.name}: a queue is configured but no handler")
            await self._start_consumer(self.spec.queue, handler=self._handler)
        for extra in self.spec.extra_queues:
            raw = self._raw_handlers.get(extra.name)
            if raw is None:
                raise RuntimeError(f"{self.spec.name}: no raw handler for queue {extra.name}")
            await self._start_consumer(extra, raw_handler=raw)
        for hook in self._ready_hooks:
            await hook(self)

    async def _purge_inbox(self, every: float = 3600.0) -> None:
        """Forget processed event ids older than ``INBOX_RETENTION_DAYS`` (hourly).

        A duplicate delivered after that window would be applied again, so the window must
        exceed any redelivery delay (broker redeliveries take seconds to minutes).
        """
        while True:
            try:
                deleted = await purge_processed(
                    self.pool, self.spec.schema, self.settings.inbox_retention_days
                )
                if deleted:
                    log.info("inbox_purged", rows=deleted)
            except Exception as exc:  # the next round tries again
                log.warning("inbox_purge_failed", error=str(exc))
            await asyncio.sleep(every)

    async def _start_consumer(
        self,
        spec: QueueSpec,
        handler: Handler | None = None,
        raw_handler: RawHandler | None = None,
    ) -> None:
        channel = await self.connection.channel(publisher_confirms=True, on_return_raises=True)
        await channel.set_qos(prefetch_count=spec.prefetch)
        queue = await broker.declare_queue(channel, self.topology, spec)
        dlx = await channel.get_exchange(self.topology.dead_letter_exchange)
        consumer = Consumer(
            name=self.topology.queue_name(spec),
            channel=channel,
            queue=queue,
            handler=handler,
            raw_handler=raw_handler,
            dead_letter_exchange=dlx,
            metrics=self.metrics,
            delivery_limit=self.settings.amqp_delivery_limit,
        )
        await consumer.start()
        self._consumers.append(consumer)

    async def stop(self) -> None:
        """Graceful shutdown: stop consuming, finish in-flight work, close everything."""
        self._stopping = True
        if self._bootstrap is not None and not self._bootstrap.done():
            self._bootstrap.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._bootstrap
        timeout = self.settings.shutdown_timeout
        if self._consumers:
            await asyncio.gather(*(c.stop(timeout) for c in self._consumers))
        for hook in reversed(self._stop_hooks):
            try:
                await asyncio.wait_for(hook(), timeout)
            except Exception as exc:
                log.warning("stop_hook_failed", error=str(exc))
        if self.relay is not None:
            await self.relay.stop()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._close_resources()
        self.metrics.ready.set(0)
        log.info("service_stopped", service=self.spec.name)

    async def _close_resources(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()
        if self._pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._pool.close(), 10)
        self._connection = self._publish_channel = self._publisher = self._exchange = None
        self._pool = None
        self._consumers = []

    async def check(self) -> dict[str, str]:
        """Readiness of each dependency: ``{"database": "ok"|reason, "broker": ...}``."""
        result: dict[str, str] = {}
        if not self.ready.is_set():
            return {"database": "starting", "broker": "starting"}
        try:
            async with asyncio.timeout(2):
                await self.pool.fetchval("SELECT 1")
            result["database"] = "ok"
        except Exception as exc:
            result["database"] = f"unavailable: {type(exc).__name__}"
        conn = self._connection
        ok = conn is not None and not conn.is_closed and _transport_up(conn)
        result["broker"] = "ok" if ok else "unavailable"
        return result


def _transport_up(conn: AbstractRobustConnection) -> bool:
    connected = getattr(conn, "connected", None)
    if isinstance(connected, asyncio.Event):
        return connected.is_set()
    return True


__all__ = ["NotReady", "Runtime", "ServiceSpec"]
