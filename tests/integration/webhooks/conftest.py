"""Webhooks and account-health integration fixtures."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from codiv_testsupport import free_port

# The gateway's in-process fixtures and the publisher's harness (emulator, stand-in auth
# and scheduler), reused as they are.
from integration.gateway.conftest import make_gateway  # noqa: F401
from integration.publisher.conftest import harness, publisher_settings  # noqa: F401


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    status: int


@dataclass
class Receiver:
    """A webhook endpoint: answers ``fail_first`` 500s per delivery id, then 200."""

    url: str = ""
    fail_first: int = 0
    always_fail: bool = False
    requests: list[Received] = field(default_factory=list)

    def of_delivery(self, delivery_id: str) -> list[Received]:
        return [r for r in self.requests if r.headers.get("Codiv-Delivery-Id") == delivery_id]

    def events(self, status: int = 200) -> list[str]:
        return [r.headers["Codiv-Event"] for r in self.requests if r.status == status]

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        seen = len(self.of_delivery(request.headers.get("Codiv-Delivery-Id", "")))
        status = 500 if self.always_fail or seen < self.fail_first else 200
        self.requests.append(Received(dict(request.headers), body, status))
        return web.Response(status=status, text="ok" if status == 200 else "boom")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    rec.url = f"http://127.0.0.1:{port}/hook"
    yield rec
    await runner.cleanup()


__all__ = ["Received", "Receiver"]


# Auth's in-process fixtures (service, emulator, event probe) for the token_expiring rule.
from integration.auth.conftest import (  # noqa: E402, F401
    db,
    emulator,
    http,
    key_ring_spec,
    probe,
    run_auth,
)
