"""Harness for the publisher's integration tests: the publisher in-process with real
PostgreSQL and RabbitMQ, the Pinterest emulator in-process, a minimal stand-in for the
auth service's internal token API (backed by the emulator's OAuth refresh) and a minimal
stand-in for the scheduler's retry release (post.retry -> post.due at retry_at)."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import aiohttp
import pytest
from aiohttp import web
from codiv_common.broker import EventPublisher
from codiv_common.events import (
    Event,
    PostContent,
    PostDue,
    PostDueEvent,
    PostRetryEvent,
    decode_event,
)
from codiv_pinterest.emulator.app import create_app as create_emulator
from codiv_pinterest.emulator.config import EmulatorConfig, Seed, SeedBoard, SeedUser
from codiv_publisher.app import create_app
from codiv_publisher.settings import Settings
from codiv_testsupport import free_port, wait_until

INTERNAL_TOKEN = "test-internal-token"


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


@dataclass
class Account:
    account_id: str
    username: str
    access_token: str
    refresh_token: str
    board_id: str
    section_id: str
    other_board_id: str


class FakeAuth:
    """The internal token contract of the auth service, refreshing at the emulator."""

    def __init__(self, emulator_url: str) -> None:
        self.emulator_url = emulator_url
        self.accounts: dict[str, Account] = {}
        self.calls: defaultdict[str, int] = defaultdict(int)
        self.app = web.Application()
        base = "/internal/v1/accounts/{account_id}/access-token"
        self.app.router.add_get(base, self._get)
        self.app.router.add_post(base + ":invalidate", self._invalidate)

    def _check(self, request: web.Request) -> Account | web.Response:
        if request.headers.get("Authorization") != f"Bearer {INTERNAL_TOKEN}":
            return web.json_response({"code": "unauthorized"}, status=401)
        account = self.accounts.get(request.match_info["account_id"])
        if account is None:
            return web.json_response({"code": "account_not_found"}, status=404)
        return account

    @staticmethod
    def _answer(token: str) -> web.Response:
        expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
        return web.json_response(
            {"access_token": token, "expires_at": expires.isoformat().replace("+00:00", "Z")}
        )

    async def _get(self, request: web.Request) -> web.Response:
        self.calls["get"] += 1
        account = self._check(request)
        if isinstance(account, web.Response):
            return account
        return self._answer(account.access_token)

    async def _invalidate(self, request: web.Request) -> web.Response:
        self.calls["invalidate"] += 1
        account = self._check(request)
        if isinstance(account, web.Response):
            return account
        basic = base64.b64encode(b"emulator:secret").decode()
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{self.emulator_url}/v5/oauth/token",
                data={"grant_type": "refresh_token", "refresh_token": account.refresh_token},
                headers={"Authorization": f"Basic {basic}"},
            ) as resp,
        ):
            body = await resp.json()
        if resp.status != 200:
            return web.json_response(
                {"code": "needs_reauth", "detail": "refresh refused"}, status=409
            )
        account.access_token = body["access_token"]
        account.refresh_token = body["refresh_token"]
        return self._answer(account.access_token)


class RetryRelay:
    """Stands in for the scheduler: each post.retry comes back as post.due at retry_at."""

    def __init__(self, publisher: EventPublisher) -> None:
        self.publisher = publisher
        self.tasks: set[asyncio.Task[None]] = set()

    def schedule(self, event: PostRetryEvent) -> None:
        task = asyncio.create_task(self._later(event))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _later(self, event: PostRetryEvent) -> None:
        p = event.payload
        delay = (p.retry_at - dt.datetime.now(dt.UTC)).total_seconds()
        if delay > 0:
            await asyncio.sleep(delay)
        await self.publisher.publish(
            PostDueEvent(
                workspace_id=event.workspace_id,
                correlation_id=event.correlation_id,
                causation_id=event.event_id,
                producer="scheduler",
                payload=PostDue(
                    post_id=p.post_id, attempt=p.attempt, due_at=p.retry_at, content=p.content
                ),
            )
        )


@dataclass
class Harness:
    emulator_url: str
    emulator: web.Application
    auth: FakeAuth
    account: Account
    publisher_events: EventPublisher
    http: aiohttp.ClientSession
    events: list[Event] = field(default_factory=list)
    publisher_url: str = ""
    workspace_id: uuid.UUID = field(default_factory=uuid.uuid4)

    # ------------------------------------------------------------- driving

    def content(self, **overrides: Any) -> PostContent:
        values: dict[str, Any] = {
            "post_type": "image",
            "pinterest_account_id": self.account.account_id,
            "board_id": self.account.board_id,
            "title": f"t-{uuid.uuid4().hex[:12]}",
            "description": "A description",
            "link": "https://example.com/landing",
            "alt_text": "alt words",
            "media_urls": ["https://images.example.com/a.jpg"],
        }
        values.update(overrides)
        return PostContent(**values)

    def due(
        self, content: PostContent, *, post_id: uuid.UUID | None = None, attempt: int = 1
    ) -> PostDueEvent:
        return PostDueEvent(
            workspace_id=self.workspace_id,
            producer="scheduler",
            payload=PostDue(
                post_id=post_id or uuid.uuid4(),
                attempt=attempt,
                due_at=dt.datetime.now(dt.UTC),
                content=content,
            ),
        )

    async def send(self, *events: PostDueEvent) -> None:
        for event in events:
            await self.publisher_events.publish(event)

    # ------------------------------------------------------------- observing

    def of(self, event_type: str, post_id: uuid.UUID | None = None) -> list[Event]:
        return [
            e
            for e in self.events
            if e.type == event_type
            and (post_id is None or getattr(e.payload, "post_id", None) == post_id)
        ]

    def outcome(self, post_id: uuid.UUID) -> Event | None:
        for e in self.events:
            if e.type in ("post.published", "post.failed") and e.payload.post_id == post_id:  # type: ignore[union-attr]
                return e
        return None

    async def wait_outcomes(self, post_ids: list[uuid.UUID], timeout: float = 30) -> None:
        await wait_until(lambda: all(self.outcome(p) for p in post_ids), timeout=timeout)

    async def admin(self, method: str, path: str, body: Any = None) -> Any:
        async with self.http.request(
            method, f"{self.emulator_url}/_emulator{path}", json=body
        ) as resp:
            assert resp.status < 300, await resp.text()
            return await resp.json() if resp.status != 204 else None

    async def get_pin(self, pin_id: str) -> dict[str, Any]:
        token = self.auth.accounts[self.account.account_id].access_token
        async with self.http.get(
            f"{self.emulator_url}/v5/pins/{pin_id}",
            headers={"Authorization": f"Bearer {token}"},
        ) as resp:
            assert resp.status == 200, await resp.text()
            data: dict[str, Any] = await resp.json()
            return data

    async def emulator_pins(self) -> list[dict[str, Any]]:
        body = await self.admin("GET", f"/pins?username={self.account.username}")
        items: list[dict[str, Any]] = body["items"]
        return items

    async def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = await self.admin("GET", "/stats")
        return stats


@pytest.fixture
def publisher_settings(database_url: str, broker: Any) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": database_url,
            "amqp_url": broker.url,
            "amqp_exchange": broker.exchange,
            "amqp_queue_prefix": broker.queue_prefix,
            "internal_service_token": INTERNAL_TOKEN,
            "allow_loopback_media": True,
            "retry_base_delay": 0.2,
            "pinterest_timeout": 3.0,
            "retry_max_delay": 1.0,
            "media_poll_initial": 0.3,
            "media_poll_max": 1.0,
            "outbox_poll_interval": 0.2,
            "shutdown_timeout": 5.0,
            "log_level": "WARNING",
            "log_format": "json",
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
async def harness(
    broker: Any, publisher_settings: Callable[..., Settings], request: pytest.FixtureRequest
) -> AsyncIterator[Callable[..., Any]]:
    """``await start(**settings_overrides)`` returns a running :class:`Harness`."""
    runners: list[web.AppRunner] = []
    closers: list[Any] = []
    relay_holder: list[RetryRelay] = []

    async def start(emulator_config: EmulatorConfig | None = None, **overrides: Any) -> Harness:
        username = "pub_" + uuid.uuid4().hex[:6]
        config = emulator_config or EmulatorConfig()
        config = config.model_copy(
            update={
                "seed": Seed(
                    users=[
                        SeedUser(
                            username=username,
                            boards=[
                                SeedBoard(name="Main", sections=["Section A"]),
                                SeedBoard(name="Other"),
                            ],
                        )
                    ]
                )
            }
        )
        emulator = create_emulator(config)
        runner, emulator_url = await _serve(emulator)
        runners.append(runner)
        http = aiohttp.ClientSession()
        closers.append(http.close)
        auth = FakeAuth(emulator_url)
        auth_runner, auth_url = await _serve(auth.app)
        runners.append(auth_runner)

        async with http.post(
            f"{emulator_url}/_emulator/tokens", json={"username": username}
        ) as resp:
            tokens = await resp.json()
        async with http.get(
            f"{emulator_url}/v5/boards",
            headers={"Authorization": f"Bearer {tokens['access_token']}"},
        ) as resp:
            boards = {b["name"]: b["id"] for b in (await resp.json())["items"]}
        async with http.get(
            f"{emulator_url}/v5/boards/{boards['Main']}/sections",
            headers={"Authorization": f"Bearer {tokens['access_token']}"},
        ) as resp:
            section_id = (await resp.json())["items"][0]["id"]
        account = Account(
            account_id=str(uuid.uuid4()),
            username=username,
            access_token=tokens["access_token"],
            refresh_token=tokens["refresh_token"],
            board_id=boards["Main"],
            section_id=section_id,
            other_board_id=boards["Other"],
        )
        auth.accounts[account.account_id] = account

        # Test side of the broker: a publisher of post.due and a queue of what comes back.
        connection = await aio_pika.connect_robust(broker.url)
        closers.append(connection.close)
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        exchange = await channel.declare_exchange(
            broker.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        await channel.declare_exchange(
            f"{broker.exchange}.dlx", aio_pika.ExchangeType.DIRECT, durable=True
        )
        events_pub = EventPublisher(exchange, confirm_timeout=10)
        queue = await channel.declare_queue(f"{broker.queue_prefix}test", durable=True)
        for key in (
            "post.publishing",
            "post.published",
            "post.failed",
            "post.retry",
            "post.paused",
            "post.resumed",
        ):
            await queue.bind(exchange, routing_key=key)

        settings = publisher_settings(
            pinterest_api_url=f"{emulator_url}/v5", auth_url=auth_url, **overrides
        )
        app = create_app(settings)
        pub_runner, pub_url = await _serve(app)
        runners.append(pub_runner)

        h = Harness(
            emulator_url=emulator_url,
            emulator=emulator,
            auth=auth,
            account=account,
            publisher_events=events_pub,
            http=http,
            publisher_url=pub_url,
        )
        relay = RetryRelay(events_pub)
        relay_holder.append(relay)

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            async with message.process():
                event = decode_event(message.body)
                h.events.append(event)
                if isinstance(event, PostRetryEvent):
                    relay.schedule(event)

        await queue.consume(on_message)

        async def ready() -> bool:
            async with http.get(pub_url + "/readyz") as resp:
                return resp.status == 200

        await wait_until(ready, timeout=20, interval=0.1)
        return h

    yield start

    for relay in relay_holder:
        for task in list(relay.tasks):
            task.cancel()
        await asyncio.gather(*relay.tasks, return_exceptions=True)
    for runner in reversed(runners):
        await runner.cleanup()
    for close in reversed(closers):
        await close()
