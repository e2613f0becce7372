"""Helpers to run the emulator inside a test process and drive its admin API."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from codiv_pinterest.emulator.app import STATE, Middleware, create_app
from codiv_pinterest.emulator.config import EmulatorConfig
from codiv_pinterest.emulator.state import EmulatorState

__all__ = ["EmulatorAdmin", "RunningEmulator", "run_emulator"]


@dataclass(frozen=True)
class RunningEmulator:
    """An emulator listening on ``base_url``; ``state`` allows in-process inspection."""

    base_url: str
    app: web.Application

    @property
    def api_base_url(self) -> str:
        return f"{self.base_url}/v5"

    @property
    def oauth_url(self) -> str:
        return f"{self.base_url}/oauth/"

    @property
    def state(self) -> EmulatorState:
        return self.app[STATE]


@asynccontextmanager
async def run_emulator(
    config: EmulatorConfig | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    middlewares: Sequence[Middleware] = (),
) -> AsyncIterator[RunningEmulator]:
    """Serve a fresh emulator on a free port for the duration of the ``async with``."""
    app = create_app(config, middlewares=middlewares)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        yield RunningEmulator(f"http://{bound_host}:{bound_port}", app)
    finally:
        await runner.cleanup()


class EmulatorAdmin:
    """A thin client for the emulator's ``/_emulator`` admin API (see the README)."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self._session = session
        self._base = base_url.rstrip("/") + "/_emulator"

    async def call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        async with self._session.request(method, self._base + path, json=body) as resp:
            data = await resp.json() if resp.status != 204 else None
            if resp.status >= 400:
                raise RuntimeError(f"emulator admin {method} {path}: {resp.status} {data}")
            return data

    async def reset(self) -> None:
        await self.call("POST", "/reset")

    async def add_fault(self, **rule: Any) -> int:
        """Add a fault rule (see ``FaultRule``); returns its id."""
        data = await self.call("POST", "/faults", rule)
        return int(data["id"])

    async def clear_faults(self) -> None:
        await self.call("DELETE", "/faults")

    async def advance_clock(self, seconds: float) -> str:
        data = await self.call("POST", "/clock/advance", {"seconds": seconds})
        return str(data["now"])

    async def create_user(self, username: str, **fields: Any) -> dict[str, Any]:
        data: dict[str, Any] = await self.call("POST", "/users", {"username": username, **fields})
        return data

    async def add_boards(self, user_id: str, count: int, name_prefix: str = "Board") -> list[str]:
        data = await self.call(
            "POST", f"/users/{user_id}/boards", {"count": count, "name_prefix": name_prefix}
        )
        return [str(b) for b in data["board_ids"]]

    async def mint_token(self, username: str, **fields: Any) -> dict[str, Any]:
        data: dict[str, Any] = await self.call("POST", "/tokens", {"username": username, **fields})
        return data

    async def revoke(self, **target: str) -> int:
        data = await self.call("POST", "/tokens/revoke", target)
        return int(data["revoked"])

    async def stats(self) -> dict[str, Any]:
        data: dict[str, Any] = await self.call("GET", "/stats")
        return data

    async def pins(self, **filters: str) -> list[dict[str, Any]]:
        query = "&".join(f"{k}={v}" for k, v in filters.items())
        data = await self.call("GET", "/pins" + (f"?{query}" if query else ""))
        return list(data["items"])
