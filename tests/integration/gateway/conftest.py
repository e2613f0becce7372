"""Gateway integration fixtures: the app in-process on real PostgreSQL and RabbitMQ."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from codiv_common.events import (
    AccountBoardsSynced,
    AccountBoardsSyncedEvent,
    AccountConnected,
    AccountConnectedEvent,
    Board,
    BoardSection,
    EnvelopeBase,
)
from codiv_common.http import RUNTIME_KEY
from codiv_common.runtime import Runtime
from codiv_gateway import domain
from codiv_gateway.adapters.postgres import Store
from codiv_gateway.app import create_app
from codiv_gateway.consumers import EventConsumer
from codiv_gateway.handlers import SERVICE_KEY
from codiv_gateway.settings import Settings

DEFAULT_BOARDS = [
    Board(
        id="714329185762948372",
        name="Living Rooms",
        sections=[BoardSection(id="5001", name="Sofas")],
    ),
    Board(id="714329185762948373", name="Kitchens"),
]


@dataclass
class Workspace:
    id: uuid.UUID
    key: str
    plan: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@dataclass
class Gateway:
    client: TestClient[Any, Any]
    runtime: Runtime
    consumer: EventConsumer
    settings: Settings
    workspaces: list[Workspace] = field(default_factory=list)

    async def workspace(self, plan: str = "pro") -> Workspace:
        ws_id = uuid.uuid4()
        key = domain.generate_api_key()
        async with self.runtime.pool.acquire() as conn:
            await Store.create_workspace(conn, ws_id, f"ws-{ws_id.hex[:6]}", plan)
            await Store.add_api_key(conn, uuid.uuid4(), ws_id, key.prefix, key.key_hash)
        ws = Workspace(ws_id, key.key, plan)
        self.workspaces.append(ws)
        return ws

    async def call(
        self, ws: Workspace | None, method: str, path: str, **kw: Any
    ) -> tuple[ClientResponse, Any]:
        headers = {**(ws.auth if ws else {}), **kw.pop("headers", {})}
        resp = await self.client.request(method, path, headers=headers, **kw)
        text = await resp.text()
        body: Any = text
        if resp.content_type in ("application/json", "application/problem+json") and text:
            import json

            body = json.loads(text)
        return resp, body

    async def feed(self, *events: EnvelopeBase) -> None:
        """Deliver events through the gateway's consumer (inbox included)."""
        for event in events:
            await self.consumer.handle(event)  # type: ignore[arg-type]

    async def connected_profile(
        self,
        ws: Workspace,
        name: str = "shop-account",
        boards: list[Board] | None = None,
        account_id: str | None = None,
    ) -> str:
        resp, body = await self.call(ws, "POST", "/v1/profiles", json={"name": name})
        assert resp.status == 201, body
        profile_id = uuid.UUID(body["id"])
        account = account_id or str(uuid.uuid4())
        await self.feed(
            AccountConnectedEvent(
                workspace_id=ws.id,
                payload=AccountConnected(
                    account_id=account, profile_id=profile_id, username="shop"
                ),
            ),
            AccountBoardsSyncedEvent(
                workspace_id=ws.id,
                payload=AccountBoardsSynced(
                    account_id=account,
                    profile_id=profile_id,
                    boards=DEFAULT_BOARDS if boards is None else boards,
                ),
            ),
        )
        return body["id"]


GatewayFactory = Callable[..., Awaitable[Gateway]]


@pytest.fixture
async def make_gateway(database_url: str, broker: Any) -> AsyncIterator[GatewayFactory]:
    started: list[TestClient[Any, Any]] = []

    async def factory(**overrides: Any) -> Gateway:
        settings = Settings(
            database_url=database_url,
            amqp_url=broker.url,
            amqp_exchange=broker.exchange,
            amqp_queue_prefix=broker.queue_prefix,
            log_format="json",
            log_level="WARNING",
            rate_limit_free=overrides.pop("rate_limit_free", 10_000),
            rate_limit_pro=overrides.pop("rate_limit_pro", 10_000),
            media_resolve_timeout=2.0,
            **overrides,
        )
        app = create_app(settings)
        client: TestClient[Any, Any] = TestClient(TestServer(app))
        await client.start_server()
        started.append(client)
        runtime = app[RUNTIME_KEY]
        await runtime.wait_ready(30)
        consumer = EventConsumer(runtime, "gateway", app[SERVICE_KEY])
        return Gateway(client, runtime, consumer, settings)

    yield factory
    for client in started:
        await client.close()


@pytest.fixture
async def gw(make_gateway: GatewayFactory) -> Gateway:
    return await make_gateway()


def post_body(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "profile_name": "shop-account",
        "platforms": ["pinterest"],
        "post_type": "image",
        "description": "Minimalist living room, spring 2026",
        "media_urls": ["https://151.101.1.1/room.jpg"],
        "pinterest_board_id": "714329185762948372",
        "pinterest_link": "https://shop.example.com/living-room",
        "pinterest_alt_text": "White sofa with wooden coffee table",
    }
    body.update(over)
    return {k: v for k, v in body.items() if v is not None}
