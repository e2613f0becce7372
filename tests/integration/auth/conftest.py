"""Auth integration fixtures: the service in-process over real PostgreSQL and RabbitMQ, the
Pinterest emulator in-process, and a probe queue that records every ``account.*`` event."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aio_pika
import aiohttp
import asyncpg
import pytest
from aio_pika.abc import AbstractIncomingMessage
from aiohttp import web
from aiohttp.test_utils import TestServer
from codiv_auth.app import create_app
from codiv_auth.domain import make_state
from codiv_auth.settings import Settings
from codiv_common import broker as b
from codiv_common.crypto import KeyRing, sha256_hex
from codiv_common.events import Event, decode_event
from codiv_common.http import RUNTIME_KEY
from codiv_pinterest.client import build_authorize_url
from codiv_pinterest.emulator.config import EmulatorConfig, SeedBoard, SeedUser
from codiv_pinterest.emulator.state import EmulatorState
from codiv_pinterest.testing import RunningEmulator, run_emulator
from codiv_testsupport import free_port, wait_until
from pydantic import SecretStr

STATE_SECRET = "test-state-secret"
SERVICE_TOKEN = "test-service-token"
CLIENT_ID = "codiv-test-app"
CLIENT_SECRET = "codiv-test-secret"
SCOPES = ("boards:read", "boards:write", "pins:read", "pins:write", "user_accounts:read")
SUCCESS_URL = "http://codiv.test/connected"


class Probe:
    """Records ``account.*`` events from a queue bound on the test's exchange; publishes."""

    def __init__(self) -> None:
        self.received: list[Event] = []
        self.publisher: b.EventPublisher | None = None

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        self.received.append(decode_event(message.body))
        await message.ack()

    def of_type(self, type_: str, **payload: Any) -> list[Any]:
        return [
            e
            for e in self.received
            if e.type == type_ and all(getattr(e.payload, k) == v for k, v in payload.items())
        ]

    async def wait_for(
        self, type_: str, count: int = 1, timeout: float = 15.0, **payload: Any
    ) -> list[Any]:
        await wait_until(lambda: len(self.of_type(type_, **payload)) >= count, timeout=timeout)
        return self.of_type(type_, **payload)

    async def publish(self, event: Event) -> None:
        assert self.publisher is not None
        await self.publisher.publish(event)


@pytest.fixture
async def probe(broker: Any) -> AsyncIterator[Probe]:
    connection = await aio_pika.connect_robust(broker.url)
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        topo = b.Topology(exchange=broker.exchange, queue_prefix=broker.queue_prefix)
        exchange = await b.declare_exchanges(channel, topo)
        queue = await b.declare_queue(channel, topo, b.QueueSpec("test", ["account.*"]))
        p = Probe()
        p.publisher = b.EventPublisher(exchange, confirm_timeout=5)
        consume = await connection.channel()
        await consume.set_qos(prefetch_count=100)
        q = await consume.get_queue(queue.name)
        tag = await q.consume(p.on_message)
        yield p
        await q.cancel(tag)
    finally:
        await connection.close()


@pytest.fixture
async def emulator() -> AsyncIterator[RunningEmulator]:
    config = EmulatorConfig(
        seed={"users": [], "apps": [{"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}]}
    )
    async with run_emulator(config) as running:
        yield running


def add_user(
    emulator: RunningEmulator,
    username: str,
    boards: int = 0,
    sections: dict[str, list[str]] | None = None,
) -> str:
    """A Pinterest user in the emulator with ``boards`` generated boards (+ named ones)."""
    state: EmulatorState = emulator.state
    named = [SeedBoard(name=n, sections=s) for n, s in (sections or {}).items()]
    user = state.add_user(SeedUser(username=username, boards=named, generated_boards=boards))
    return user.id


def issued_tokens(emulator: RunningEmulator) -> list[str]:
    """Every access and refresh token the emulator ever issued."""
    return list(emulator.state.tokens)


def live_refresh_token(emulator: RunningEmulator, user_id: str) -> str:
    live = [
        t.value
        for t in emulator.state.tokens.values()
        if t.kind == "refresh" and t.user_id == user_id and not t.revoked
    ]
    assert len(live) == 1, live
    return live[0]


def refresh_count(emulator: RunningEmulator, user_id: str) -> int:
    return int(emulator.state.stats.token_refreshes.get(user_id, 0))


@dataclass
class Auth:
    """A running auth service (in-process) and what tests need to drive it."""

    base_url: str
    app: web.Application
    settings: Settings
    emulator: RunningEmulator
    http: aiohttp.ClientSession

    @property
    def callback_url(self) -> str:
        return f"{self.base_url}/oauth/pinterest/callback"

    def state(
        self, workspace_id: uuid.UUID, profile_id: uuid.UUID, name: str = "main", **kw: Any
    ) -> str:
        return make_state(STATE_SECRET.encode(), workspace_id, profile_id, name, **kw)

    def authorize_url(self, state: str, user: str | None = None) -> str:
        url = build_authorize_url(
            self.emulator.oauth_url, CLIENT_ID, self.settings.oauth_redirect_uri, SCOPES, state
        )
        return url + (f"&emulator_user={user}" if user else "")

    async def connect(
        self, workspace_id: uuid.UUID, profile_id: uuid.UUID, user: str, name: str = "main"
    ) -> aiohttp.ClientResponse:
        """Follow authorize URL -> emulator consent -> our callback; return the callback's
        answer (a 302 to the success URL when all went well)."""
        state = self.state(workspace_id, profile_id, name)
        async with self.http.get(self.authorize_url(state, user), allow_redirects=False) as r:
            assert r.status == 302, await r.text()
            location = r.headers["Location"]
        assert location.startswith(self.callback_url)
        async with self.http.get(location, allow_redirects=False) as resp:
            await resp.read()
            return resp

    async def token(
        self, account_id: str, *, invalidate: bool = False, rejected: str | None = None
    ) -> tuple[int, Any]:
        path = f"/internal/v1/accounts/{account_id}/access-token"
        headers = {"Authorization": f"Bearer {SERVICE_TOKEN}"}
        if invalidate:
            body = {"rejected_token_sha256": sha256_hex(rejected)} if rejected else None
            req = self.http.post(self.base_url + path + ":invalidate", headers=headers, json=body)
        else:
            req = self.http.get(self.base_url + path, headers=headers)
        async with req as resp:
            return resp.status, await resp.json()


def account_id_of(resp: aiohttp.ClientResponse) -> str:
    assert resp.status == 302, resp.status
    location = resp.headers["Location"]
    assert location.startswith(SUCCESS_URL)
    return parse_qs(urlsplit(location).query)["account_id"][0]


RunAuth = Callable[..., AbstractAsyncContextManager[Auth]]


@pytest.fixture
def key_ring_spec() -> str:
    return f"k1:{KeyRing.generate_key()}"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def run_auth(
    database_url: str,
    broker: Any,
    emulator: RunningEmulator,
    key_ring_spec: str,
    http: aiohttp.ClientSession,
) -> RunAuth:
    """``async with run_auth(**settings_overrides) as auth:`` a ready auth service."""

    @asynccontextmanager
    async def _run(**overrides: Any) -> AsyncIterator[Auth]:
        port = free_port()
        values: dict[str, Any] = {
            "database_url": SecretStr(database_url),
            "amqp_url": SecretStr(broker.url),
            "amqp_exchange": broker.exchange,
            "amqp_queue_prefix": broker.queue_prefix,
            "database_pool_max": 5,
            "token_encryption_keys": SecretStr(key_ring_spec),
            "internal_service_token": SecretStr(SERVICE_TOKEN),
            "oauth_state_secret": SecretStr(STATE_SECRET),
            "pinterest_client_id": CLIENT_ID,
            "pinterest_client_secret": SecretStr(CLIENT_SECRET),
            "pinterest_api_url": emulator.api_base_url,
            "pinterest_oauth_url": emulator.oauth_url,
            "oauth_redirect_uri": f"http://127.0.0.1:{port}/oauth/pinterest/callback",
            "oauth_success_url": SUCCESS_URL,
            "refresh_interval": 0.3,
            "refresh_retry_base": 0.2,
            "shutdown_timeout": 5,
        }
        values.update(overrides)
        settings = Settings(**values)
        app = create_app(settings)
        server = TestServer(app, host="127.0.0.1", port=port)
        await server.start_server()
        try:
            await app[RUNTIME_KEY].wait_ready(30)
            yield Auth(f"http://127.0.0.1:{port}", app, settings, emulator, http)
        finally:
            await server.close()

    return _run


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=3)
    assert pool is not None
    yield pool
    await pool.close()


async def wait_for_row(db: asyncpg.Pool, sql: str, *args: Any, timeout: float = 10.0) -> Any:
    async def check() -> Any:
        return await db.fetchrow(sql, *args)

    return await wait_until(check, timeout=timeout)


def monotonic() -> float:
    return time.monotonic()
