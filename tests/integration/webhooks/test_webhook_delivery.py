"""Webhooks in the gateway, in-process on real PostgreSQL: API, fan-out from applied events,
signed deliveries to a local receiver, retries after 500s, dedup ids, giving up, paused posts."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import pytest
from codiv_common.crypto import KeyRing
from codiv_common.events import (
    AccountConnected,
    AccountConnectedEvent,
    AccountNeedsReauth,
    AccountNeedsReauthEvent,
    AccountTokenExpiring,
    AccountTokenExpiringEvent,
    PostContent,
    PostError,
    PostFailed,
    PostFailedEvent,
    PostPaused,
    PostPausedEvent,
    PostPublished,
    PostPublishedEvent,
    PostResumed,
    PostResumedEvent,
    PostRetry,
    PostRetryEvent,
)
from codiv_gateway import webhooks
from codiv_testsupport import wait_until
from integration.gateway.conftest import post_body

pytestmark = pytest.mark.integration

ALL_EVENTS = list(webhooks.WEBHOOK_EVENTS)
FAST = {
    "allow_loopback_webhooks": True,
    "webhook_poll_interval": 0.1,
    "webhook_retry_base": 0.2,
    "webhook_retry_max": 0.4,
    "webhook_secret_keys": f"w1:{KeyRing.generate_key()}",
}


async def _setup(gw: Any, receiver: Any, events: list[str] | None = None) -> tuple[Any, str, str]:
    ws = await gw.workspace()
    profile_id = await gw.connected_profile(ws)
    resp, body = await gw.call(
        ws, "POST", "/v1/webhooks", json={"url": receiver.url, "events": events or ALL_EVENTS}
    )
    assert resp.status == 201, body
    assert body["secret"].startswith("whsec_")
    return ws, profile_id, body["id"], body["secret"]  # type: ignore[return-value]


async def _post(gw: Any, ws: Any) -> uuid.UUID:
    resp, body = await gw.call(ws, "POST", "/v1/posts", json=post_body())
    assert resp.status == 202, body
    return uuid.UUID(body["id"])


def _published(ws: Any, post_id: uuid.UUID) -> PostPublishedEvent:
    return PostPublishedEvent(
        workspace_id=ws.id,
        payload=PostPublished(
            post_id=post_id,
            pin_id="9001",
            pin_url="https://www.pinterest.com/pin/9001/",
            board_id="714329185762948372",
            published_at=dt.datetime.now(dt.UTC),
        ),
    )


async def test_signed_delivery_retried_after_500s_with_a_stable_id(
    make_gateway: Any, receiver: Any
) -> None:
    gw = await make_gateway(**FAST)
    ws, _, webhook_id, secret = await _setup(gw, receiver)
    receiver.fail_first = 2
    post_id = await _post(gw, ws)
    event = _published(ws, post_id)
    await gw.feed(event, event)  # a redelivered event adds nothing
    await gw.feed(_published(ws, post_id))  # nor a second report of the same outcome

    await wait_until(lambda: receiver.events(200), timeout=15)
    attempts = receiver.requests
    assert [r.status for r in attempts] == [500, 500, 200]
    delivery_ids = {r.headers["Codiv-Delivery-Id"] for r in attempts}
    assert len(delivery_ids) == 1
    assert len({r.body for r in attempts}) == 1  # the same bytes every time
    for r in attempts:
        assert webhooks.verify(secret, r.body, r.headers["Codiv-Signature"])
        assert not webhooks.verify("whsec_other", r.body, r.headers["Codiv-Signature"])
        assert r.headers["Codiv-Event"] == "post.published"
    body = json.loads(attempts[0].body)
    assert body["id"] == delivery_ids.pop()
    assert body["type"] == "post.published"
    assert body["data"]["post_id"] == str(post_id)
    assert body["data"]["pin_id"] == "9001"
    assert body["data"]["profile_name"] == "shop-account"

    resp, listing = await gw.call(ws, "GET", f"/v1/webhooks/{webhook_id}/deliveries")
    assert resp.status == 200
    [delivery] = listing["data"]
    assert delivery["id"] == body["id"]
    assert delivery["status"] == "delivered"
    assert delivery["attempts"] == 3
    assert [a["status_code"] for a in delivery["attempt_log"]] == [500, 500, 200]
    assert delivery["last_status_code"] == 200

    # A stale failure for the published post announces nothing.
    await gw.feed(
        PostFailedEvent(
            workspace_id=ws.id,
            payload=PostFailed(post_id=post_id, error=PostError(code="x", message="late")),
        )
    )
    resp, listing = await gw.call(ws, "GET", f"/v1/webhooks/{webhook_id}/deliveries")
    assert len(listing["data"]) == 1


async def test_account_events_and_subscriptions(make_gateway: Any, receiver: Any) -> None:
    gw = await make_gateway(**FAST)
    events = ["account.needs_reauth", "account.reconnected", "account.token_expiring"]
    ws, profile_id, webhook_id, secret = await _setup(gw, receiver, events)
    pid = uuid.UUID(profile_id)
    account = str(uuid.uuid4())
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=3)
    await gw.feed(
        AccountNeedsReauthEvent(
            workspace_id=ws.id,
            payload=AccountNeedsReauth(account_id=account, profile_id=pid, reason="invalid_grant"),
        ),
        AccountConnectedEvent(  # a first connect is not a reconnect
            workspace_id=ws.id,
            payload=AccountConnected(account_id=str(uuid.uuid4()), profile_id=pid),
        ),
        AccountConnectedEvent(
            workspace_id=ws.id,
            payload=AccountConnected(account_id=account, profile_id=pid, reconnected=True),
        ),
        AccountTokenExpiringEvent(
            workspace_id=ws.id,
            payload=AccountTokenExpiring(
                account_id=account, profile_id=pid, refresh_token_expires_at=expires
            ),
        ),
    )
    post_id = await _post(gw, ws)
    await gw.feed(_published(ws, post_id))  # not subscribed
    await wait_until(lambda: len(receiver.events(200)) == 3, timeout=15)
    assert sorted(receiver.events(200)) == sorted(events)
    by_type = {r.headers["Codiv-Event"]: json.loads(r.body) for r in receiver.requests}
    assert by_type["account.needs_reauth"]["data"]["reason"] == "invalid_grant"
    assert by_type["account.reconnected"]["data"]["profile_name"] == "shop-account"
    assert "reconnected" not in by_type["account.reconnected"]["data"]
    assert by_type["account.token_expiring"]["data"]["refresh_token_expires_at"].startswith(
        expires.date().isoformat()
    )
    for r in receiver.requests:
        assert webhooks.verify(secret, r.body, r.headers["Codiv-Signature"])

    # The other workspace sees none of it.
    other = await gw.workspace()
    resp, _ = await gw.call(other, "GET", f"/v1/webhooks/{webhook_id}/deliveries")
    assert resp.status == 404
    resp, listing = await gw.call(other, "GET", "/v1/webhooks")
    assert listing["data"] == []


async def test_webhook_api_rules_and_secret_shown_once(make_gateway: Any, receiver: Any) -> None:
    gw = await make_gateway(**FAST)
    ws, _, webhook_id, secret = await _setup(gw, receiver)
    resp, listing = await gw.call(ws, "GET", "/v1/webhooks")
    assert [w["id"] for w in listing["data"]] == [webhook_id]
    assert listing["data"][0]["secret"] is None
    resp, one = await gw.call(ws, "GET", f"/v1/webhooks/{webhook_id}")
    assert one["secret"] is None
    assert one["events"] == sorted(ALL_EVENTS)
    # Stored encrypted: the secret is not in the row.
    async with gw.runtime.pool.acquire() as conn:
        raw = await conn.fetchval(
            "SELECT secret_enc FROM webhooks WHERE id = $1", uuid.UUID(webhook_id)
        )
    assert secret.encode() not in bytes(raw)
    # Idempotent replay: same webhook, no secret.
    key = {"Idempotency-Key": "hook-1"}
    payload = {"url": receiver.url, "events": ["post.failed"]}
    r1, b1 = await gw.call(ws, "POST", "/v1/webhooks", json=payload, headers=key)
    r2, b2 = await gw.call(ws, "POST", "/v1/webhooks", json=payload, headers=key)
    assert (r1.status, r2.status) == (201, 201)
    assert b1["id"] == b2["id"]
    assert b1["secret"]
    assert b2["secret"] is None
    assert r2.headers["Idempotent-Replayed"] == "true"

    for bad, field in (
        ({"url": receiver.url, "events": ["post.nope"]}, "events[0]"),
        ({"url": receiver.url, "events": []}, "events"),
        ({"url": "ftp://example.com/x", "events": ["post.failed"]}, "url"),
        ({"url": receiver.url}, "events"),
    ):
        resp, body = await gw.call(ws, "POST", "/v1/webhooks", json=bad)
        assert resp.status == 422, body
        assert field in [e["field"] for e in body["errors"]], body

    resp, body = await gw.call(ws, "DELETE", f"/v1/webhooks/{webhook_id}")
    assert resp.status == 200
    assert body["deleted"] is True
    resp, _ = await gw.call(ws, "DELETE", f"/v1/webhooks/{webhook_id}")
    assert resp.status == 404
    resp, _ = await gw.call(ws, "GET", "/v1/webhooks/not-a-uuid")
    assert resp.status == 404

    spec = (await gw.call(None, "GET", "/openapi.json"))[1]
    assert "/v1/webhooks/{webhook_id}/deliveries" in spec["paths"]
    assert "paused" in spec["components"]["schemas"]["Post"]["properties"]["status"]["enum"]


async def test_private_and_loopback_urls_are_refused(make_gateway: Any, receiver: Any) -> None:
    gw = await make_gateway(webhook_secret_keys=FAST["webhook_secret_keys"])
    ws = await gw.workspace()
    for url in (
        receiver.url,  # loopback (and http)
        "https://127.0.0.1/hook",
        "https://10.1.2.3/hook",
        "https://169.254.169.254/latest",
        "https://localhost/hook",
        "http://151.101.1.1/hook",  # public, but not https
    ):
        resp, body = await gw.call(
            ws, "POST", "/v1/webhooks", json={"url": url, "events": ["post.failed"]}
        )
        assert resp.status == 422, (url, body)
        assert body["errors"][0]["field"] == "url"


async def test_send_time_guard_and_giving_up_after_the_window(
    make_gateway: Any, receiver: Any
) -> None:
    # Loopback is refused at send time as well (a host re-pointed after its creation check).
    gw = await make_gateway(
        webhook_secret_keys=FAST["webhook_secret_keys"],
        webhook_poll_interval=0.1,
        webhook_retry_base=0.2,
        webhook_retry_max=0.3,
        webhook_retry_hours=1.5 / 3600,
    )
    ws = await gw.workspace()
    await gw.connected_profile(ws)
    hook_id = uuid.uuid4()
    keys = KeyRing.parse(FAST["webhook_secret_keys"])
    async with gw.runtime.pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO webhooks (id, workspace_id, url, events, secret_enc)"
            " VALUES ($1, $2, $3, $4, $5)",
            hook_id,
            ws.id,
            receiver.url,
            ["post.published"],
            keys.encrypt("whsec_x", hook_id.bytes),
        )
    post_id = await _post(gw, ws)
    await gw.feed(_published(ws, post_id))

    async def final() -> dict[str, Any] | None:
        _, listing = await gw.call(ws, "GET", f"/v1/webhooks/{hook_id}/deliveries")
        d: dict[str, Any] = listing["data"][0]
        return d if d["status"] == "failed" else None

    delivery = await wait_until(final, timeout=20, interval=0.2)
    assert receiver.requests == []  # never reached
    assert delivery["attempts"] >= 2
    assert delivery["last_status_code"] is None
    assert "refused to connect" in delivery["last_error"]
    assert delivery["next_attempt_at"] is None


async def test_paused_and_resumed_posts_in_the_read_model(make_gateway: Any) -> None:
    gw = await make_gateway(**FAST)
    ws = await gw.workspace()
    await gw.connected_profile(ws)
    post_id = await _post(gw, ws)
    now = dt.datetime.now(dt.UTC)
    paused = PostPausedEvent(
        workspace_id=ws.id,
        payload=PostPaused(
            post_id=post_id,
            account_id="a1",
            reason="The Pinterest account needs to be reconnected (invalid_grant).",
            paused_at=now,
            fail_at=now + dt.timedelta(hours=72),
        ),
    )
    await gw.feed(paused)
    _, post = await gw.call(ws, "GET", f"/v1/posts/{post_id}")
    assert post["status"] == "paused"
    resp, listed = await gw.call(ws, "GET", "/v1/posts?status=paused")
    assert resp.status == 200
    assert [p["id"] for p in listed["data"]] == [str(post_id)]
    content = PostContent(
        post_type="image", board_id="714329185762948372", media_urls=["https://x.example/a.jpg"]
    )
    retry_at = now + dt.timedelta(seconds=1)
    await gw.feed(
        PostResumedEvent(
            workspace_id=ws.id,
            payload=PostResumed(
                post_id=post_id, account_id="a1", attempt=2, paused_at=now, retry_at=retry_at
            ),
        ),
        PostRetryEvent(
            workspace_id=ws.id,
            payload=PostRetry(
                post_id=post_id,
                attempt=2,
                retry_at=retry_at,
                reason="resumed",
                content=content,
                resumed=True,
            ),
        ),
    )
    _, post = await gw.call(ws, "GET", f"/v1/posts/{post_id}")
    assert post["status"] == "publishing"
    kinds = [t["kind"] for t in post["timeline"]]
    assert kinds[-2:] == ["paused", "resumed"]
    assert "attempt_failed" not in kinds
    # A late pause after the outcome changes nothing.
    await gw.feed(_published(ws, post_id))
    await gw.feed(paused.model_copy(update={"event_id": uuid.uuid4()}))
    _, post = await gw.call(ws, "GET", f"/v1/posts/{post_id}")
    assert post["status"] == "published"
