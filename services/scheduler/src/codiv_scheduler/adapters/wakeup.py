"""The release loop's dedicated LISTEN connection: wakes it when an earlier job arrives."""

from __future__ import annotations

import asyncio
import contextlib
import math
from typing import Any

import asyncpg
from codiv_common.logging import get_logger

from .postgres import NOTIFY_CHANNEL

log = get_logger(__name__)


class WakeUp:
    """Sets :attr:`event` when a job due before :attr:`horizon` (epoch seconds) becomes pending.

    The loop sets ``horizon`` to the due time it sleeps until (``inf`` while it works,
    so that every notification during a pass counts). A notification for a later job
    is ignored: the loop will find that job by itself after the earlier one.
    While the connection is down :attr:`connected` is False and the loop must not
    sleep long (notifications are lost meanwhile).
    """

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._conn: asyncpg.Connection | None = None
        self.event = asyncio.Event()
        self.horizon = math.inf

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    async def ensure(self) -> bool:
        """(Re)connect and LISTEN if needed; True when a new connection was made."""
        if self.connected:
            return False
        await self.close()
        conn = await asyncpg.connect(self._dsn)
        try:
            await conn.add_listener(NOTIFY_CHANNEL, self._on_notify)
            conn.add_termination_listener(self._on_terminated)
        except BaseException:
            await conn.close()
            raise
        self._conn = conn
        # Anything may have been scheduled while we were not listening.
        self.event.set()
        return True

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: object) -> None:
        try:
            due = float(str(payload))
        except ValueError:
            due = -math.inf
        if due < self.horizon:
            self.event.set()

    def _on_terminated(self, _conn: Any) -> None:
        log.warning("scheduler_listener_lost")
        self.event.set()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 5)
