"""Transactional outbox: events written with the state change, relayed with confirms."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import asyncpg

from .broker import EventPublisher
from .db import Conn, check_schema_name
from .events import EnvelopeBase, encode_event
from .logging import get_logger
from .metrics import Metrics

log = get_logger(__name__)


def notify_channel(schema: str) -> str:
    """The LISTEN/NOTIFY channel that wakes ``schema``'s relay."""
    return f"{check_schema_name(schema)}_outbox"


async def enqueue(conn: Conn, schema: str, *events: EnvelopeBase) -> None:
    """Write ``events`` to the outbox on ``conn``; call inside the state change's transaction.

    A NOTIFY wakes the relay when the transaction commits (Postgres delivers
    notifications at commit, never for a rolled-back transaction).
    """
    if not events:
        return
    await conn.executemany(
        f"INSERT INTO {check_schema_name(schema)}.outbox (event_id, routing_key, body)"
        " VALUES ($1, $2, $3)",
        [(e.event_id, getattr(e, "type"), encode_event(e)) for e in events],  # noqa: B009
    )
    await conn.execute(f"NOTIFY {notify_channel(schema)}")


class OutboxRelay:
    """Publishes outbox rows in batches and deletes them once the broker confirmed them.

    Rows are claimed with ``FOR UPDATE SKIP LOCKED`` so several relays (replicas) never
    publish the same row twice while both are alive; a relay that dies mid-batch leaves
    its rows to be published again (at least once; consumers deduplicate by event id).
    The relay sleeps until a NOTIFY or ``poll_interval`` passes, whichever comes first.
    """

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        dsn: str,
        schema: str,
        publisher: EventPublisher,
        metrics: Metrics,
        batch_size: int = 200,
        poll_interval: float = 1.0,
    ) -> None:
        self._pool = pool
        self._dsn = dsn
        self._schema = check_schema_name(schema)
        self._publisher = publisher
        self._metrics = metrics
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._wake = asyncio.Event()
        self._stopped = asyncio.Event()
        self._listener: asyncpg.Connection | None = None

    def wake(self) -> None:
        """Ask the relay to look at the outbox now."""
        self._wake.set()

    def _on_notify(self, *_: Any) -> None:
        self._wake.set()

    async def _listen(self) -> None:
        if self._listener is not None and not self._listener.is_closed():
            return
        try:
            self._listener = await asyncpg.connect(self._dsn)
            await self._listener.add_listener(notify_channel(self._schema), self._on_notify)
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("outbox_listen_failed", error=str(exc))
            self._listener = None

    async def publish_batch(self) -> int:
        """Publish up to one batch; return how many rows were published."""
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                f"SELECT id, event_id, routing_key, body FROM {self._schema}.outbox"
                " ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
                self._batch_size,
            )
            if not rows:
                return 0
            await asyncio.gather(
                *(
                    self._publisher.publish_raw(r["routing_key"], str(r["event_id"]), r["body"])
                    for r in rows
                )
            )
            await conn.execute(
                f"DELETE FROM {self._schema}.outbox WHERE id = ANY($1::bigint[])",
                [r["id"] for r in rows],
            )
        self._metrics.outbox_batch.observe(len(rows))
        return len(rows)

    async def run(self) -> None:
        """Relay until :meth:`stop`; survives database and broker outages."""
        delay = 0.2
        while not self._stopped.is_set():
            await self._listen()
            self._wake.clear()
            try:
                while await self.publish_batch() == self._batch_size:
                    if self._stopped.is_set():
                        return
                delay = 0.2
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("outbox_relay_error", error=str(exc), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_interval)

    async def stop(self) -> None:
        """Stop after the current batch and close the LISTEN connection."""
        self._stopped.set()
        self._wake.set()
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()
            self._listener = None
