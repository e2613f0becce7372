"""AMQP entry points of the auth service."""

from __future__ import annotations

from collections.abc import Callable

from codiv_common.db import Conn
from codiv_common.events import (
    AccountDisconnectRequestedEvent,
    AccountSyncRequestedEvent,
    Event,
)
from codiv_common.inbox import process_once
from codiv_common.logging import get_logger

from .adapters.postgres import PoolGetter
from .service import Connections

log = get_logger(__name__)

CONSUMER = "auth"
ROUTING_KEYS = ("account.disconnect_requested", "account.sync_requested")


class EventConsumer:
    """Consumer of queue ``auth``.

    Routing keys: ``account.disconnect_requested`` (delete the profile's account and its
    tokens, emit ``account.disconnected``) and ``account.sync_requested`` (make the
    profile's board sync due now; the board worker emits ``account.boards_synced``).

    Idempotent through the inbox: the event id is recorded in the same transaction as the
    change and the outbox row, so a redelivery changes nothing. The message is acked after
    that transaction commits; database errors are retried by the consumer wrapper.
    """

    def __init__(
        self,
        pool: PoolGetter,
        schema: str,
        connections: Connections,
        wake_board_sync: Callable[[], None],
    ) -> None:
        self._pool = pool
        self._schema = schema
        self._connections = connections
        self._wake_board_sync = wake_board_sync

    async def handle(self, event: Event) -> None:
        if isinstance(event, AccountDisconnectRequestedEvent):
            disconnect = event

            async def work_disconnect(conn: Conn) -> bool:
                return await self._connections.disconnect(conn, disconnect)

            await process_once(
                self._pool(), self._schema, CONSUMER, event.event_id, work_disconnect
            )
        elif isinstance(event, AccountSyncRequestedEvent):
            sync = event

            async def work_sync(conn: Conn) -> bool:
                return await self._connections.request_sync(conn, sync)

            ran, requested = await process_once(
                self._pool(), self._schema, CONSUMER, event.event_id, work_sync
            )
            if ran and requested:
                self._wake_board_sync()
        else:
            log.info("event_ignored", type=event.type)
