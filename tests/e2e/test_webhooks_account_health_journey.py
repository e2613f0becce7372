"""Webhooks and account health end to end (every service a process, the emulator as
Pinterest): a receiver sees each event once, signed, and the retry after its 500; a revoked
account pauses its posts, reconnecting resumes them in due order and each publishes once."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from codiv_common.crypto import KeyRing
from codiv_devtools.system import Client, SystemConfig
from codiv_gateway.webhooks import verify
from codiv_testsupport import free_port, wait_until

pytestmark = pytest.mark.e2e

EVENTS = [
    "post.published",
    "post.failed",
    "account.needs_reauth",
    "account.token_expiring",
    "account.reconnected",
]


@pytest.fixture
def system_config(system_config: SystemConfig) -> SystemConfig:
    system_config.extra_env.update(
        {
            "ALLOW_LOOPBACK_WEBHOOKS": "true",
            "RATE_LIMIT_PRO": "100000",
            "WEBHOOK_SECRET_KEYS": f"w1:{KeyRing.generate_key()}",
            "WEBHOOK_POLL_INTERVAL": "0.2",
            "WEBHOOK_RETRY_BASE": "0.5",
            "WEBHOOK_RETRY_MAX": "1",
        }
    )
    return system_config


@dataclass
class Receiver:
    url: str = ""
    answered_500: set[str] = field(default_factory=set)
    requests: list[tuple[dict[str, str], bytes, int]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        delivery = request.headers.get("Codiv-Delivery-Id", "")
        # The very first delivery is answered 500 once: it must come again, same id.
        status = 200
        if not self.requests:
            self.answered_500.add(delivery)
            status = 500
        self.requests.append((dict(request.headers), body, status))
        return web.Response(status=status)

    def accepted(self) -> list[tuple[str, dict[str, Any]]]:
        return [(h["Codiv-Event"], json.loads(b)) for h, b, s in self.requests if s == 200]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hooks/codiv", rec.handle)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    rec.url = f"http://127.0.0.1:{port}/hooks/codiv"
    yield rec
    await runner.cleanup()


def _post(title: str, scheduled: datetime | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "profile_name": "shop-account",
        "platforms": ["pinterest"],
        "post_type": "image",
        "title": title,
        "media_urls": ["https://cdn.example.com/salad.jpg"],
        "pinterest_board_id": "Recipes",
    }
    if scheduled is not None:
        body["scheduled_date"] = scheduled.isoformat()
    return body


async def _status(client: Client, key: str, post_id: str, *statuses: str) -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        post: dict[str, Any] = await client.api("GET", f"/v1/posts/{post_id}", key)
        return post if post["status"] in statuses else None

    result: dict[str, Any] = await wait_until(reached, timeout=40, interval=0.2)
    return result


async def test_webhooks_and_pause_resume_journey(client: Client, receiver: Receiver) -> None:
    ws = await client.create_workspace("hooks", plan="pro")
    key = ws["api_key"]
    await client.connect_profile(key, "shop-account")
    hook = await client.api(
        "POST", "/v1/webhooks", key, {"url": receiver.url, "events": EVENTS}, expect=201
    )
    secret = hook["secret"]

    # 1. A post published now: its delivery is answered 500 once, then retried.
    first = await client.api("POST", "/v1/posts", key, _post("first"), expect=202)
    first = await _status(client, key, first["id"], "published", "failed")
    assert first["status"] == "published", first

    # 2. Two scheduled posts, then the account is revoked at Pinterest before they are due.
    due = datetime.now(UTC) + timedelta(seconds=3)
    later = [
        await client.api("POST", "/v1/posts", key, _post(f"later {i}", due + timedelta(seconds=i)))
        for i in range(2)
    ]
    await client.emulator("POST", "/tokens/revoke", {"username": "codiv_demo"})
    for post in later:
        paused = await _status(client, key, post["id"], "paused", "failed", "published")
        assert paused["status"] == "paused", paused
        assert paused["pin_id"] is None
    profile = await client.api("GET", "/v1/profiles/shop-account", key)
    assert profile["pinterest"]["status"] == "needs_reauth"

    # 3. Reconnect: the paused posts resume and publish, once each.
    await client.connect_profile(key, "shop-account")
    published = [await _status(client, key, p["id"], "published", "failed") for p in later]
    assert [p["status"] for p in published] == ["published", "published"], published
    for post in published:
        kinds = [t["kind"] for t in post["timeline"]]
        assert "paused" in kinds
        assert "resumed" in kinds
        assert kinds.index("paused") < kinds.index("resumed") < kinds.index("published")
        assert post["error"] is None

    # Resumed in due order: the earlier post was released again first.
    def released_after_resume(post: dict[str, Any]) -> str:
        kinds = [t["kind"] for t in post["timeline"]]
        after = post["timeline"][kinds.index("resumed") :]
        return str(next(t["at"] for t in after if t["kind"] == "released"))

    assert released_after_resume(published[0]) < released_after_resume(published[1])
    for post in published:  # one pause, one resume: no retry loop while paused
        kinds = [t["kind"] for t in post["timeline"]]
        assert kinds.count("paused") == 1, kinds
        assert kinds.count("resumed") == 1, kinds
        assert kinds.count("attempt_failed") == 0, kinds
    pins = await client.emulator("GET", "/pins")
    titles = sorted(p["title"] for p in pins["items"])
    assert titles == ["first", "later 0", "later 1"], titles  # no duplicate pin

    # 4. The receiver: each event once (by delivery id), every signature valid.
    expected = sorted(["post.published"] * 3 + ["account.needs_reauth", "account.reconnected"])

    def complete() -> bool:
        return sorted(t for t, _ in receiver.accepted()) == expected

    await wait_until(complete, timeout=20, interval=0.2)
    for headers, body, _ in receiver.requests:
        assert verify(secret, body, headers["Codiv-Signature"]), headers
        assert json.loads(body)["id"] == headers["Codiv-Delivery-Id"]
    ids = [b["id"] for _, b in receiver.accepted()]
    assert len(ids) == len(set(ids))  # once each
    [retried] = receiver.answered_500
    assert [h["Codiv-Delivery-Id"] for h, _, _ in receiver.requests].count(retried) == 2
    by_type = dict(receiver.accepted())
    assert by_type["account.reconnected"]["data"]["profile_name"] == "shop-account"
    assert {b["data"]["post_id"] for t, b in receiver.accepted() if t == "post.published"} == {
        first["id"],
        *(p["id"] for p in later),
    }
    deliveries = await client.api("GET", f"/v1/webhooks/{hook['id']}/deliveries", key)
    assert len(deliveries["data"]) == 5
    assert all(d["status"] == "delivered" for d in deliveries["data"])
    retried_row = next(d for d in deliveries["data"] if d["id"] == retried)
    assert [a["status_code"] for a in retried_row["attempt_log"]] == [500, 200]
