"""Status from events (out of order, duplicates), edit/cancel, listing, export, connections."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from codiv_common import signed
from codiv_common.events import (
    AccountBoardsSynced,
    AccountBoardsSyncedEvent,
    AccountConnected,
    AccountConnectedEvent,
    AccountDisconnected,
    AccountDisconnectedEvent,
    Board,
    PostChangeRejected,
    PostChangeRejectedEvent,
    PostContent,
    PostDue,
    PostDueEvent,
    PostError,
    PostFailed,
    PostFailedEvent,
    PostPublished,
    PostPublishedEvent,
    PostPublishing,
    PostPublishingEvent,
    PostRetry,
    PostRetryEvent,
)

from .conftest import Gateway, post_body

pytestmark = pytest.mark.integration

T0 = datetime.now(UTC)
CONTENT = PostContent(post_type="image", board_id="1", media_urls=["https://151.101.1.1/a.jpg"])


def later(days: int = 3) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


async def _post(gw: Gateway, **over: Any) -> tuple[Any, dict[str, Any]]:
    ws = await gw.workspace()
    await gw.connected_profile(ws)
    resp, body = await gw.call(ws, "POST", "/v1/posts", json=post_body(**over))
    assert resp.status == 202, body
    return ws, body


async def _outbox_types(gw: Gateway) -> list[str]:
    # The relay may already have sent them: read what the relay published or still holds.
    async with gw.runtime.pool.acquire() as conn:
        rows = await conn.fetch("SELECT routing_key FROM outbox ORDER BY id")
    return [r["routing_key"] for r in rows]


async def test_status_follows_events_and_final_states_stick(gw: Gateway) -> None:
    ws, post = await _post(gw)
    pid = uuid.UUID(post["id"])
    env = {"workspace_id": ws.id}
    T0 = datetime.now(UTC)  # after the post was accepted
    due = PostDueEvent(
        **env, occurred_at=T0, payload=PostDue(post_id=pid, due_at=T0, content=CONTENT)
    )
    await gw.feed(due)
    _, body = await gw.call(ws, "GET", f"/v1/posts/{pid}")
    assert body["status"] == "publishing"
    await gw.feed(due)  # duplicate delivery changes nothing
    await gw.feed(
        PostPublishingEvent(**env, occurred_at=T0 + timedelta(seconds=1),
                            payload=PostPublishing(post_id=pid, attempt=1)),
        PostRetryEvent(**env, occurred_at=T0 + timedelta(seconds=2), payload=PostRetry(
            post_id=pid, attempt=2, retry_at=T0 + timedelta(seconds=30), reason="HTTP 503",
            content=CONTENT)),
        PostPublishedEvent(**env, occurred_at=T0 + timedelta(seconds=40), payload=PostPublished(
            post_id=pid, pin_id="987654321", pin_url="x", board_id="1", attempt=2,
            published_at=T0 + timedelta(seconds=40))),
        # older events arriving late must not undo the final state
        PostPublishingEvent(**env, occurred_at=T0 + timedelta(seconds=31),
                            payload=PostPublishing(post_id=pid, attempt=2)),
        PostFailedEvent(**env, occurred_at=T0 + timedelta(seconds=3), payload=PostFailed(
            post_id=pid, attempt=1, error=PostError(code="x", message="late"))),
    )  # fmt: skip
    _, body = await gw.call(ws, "GET", f"/v1/posts/{pid}")
    assert body["status"] == "published"
    assert body["pin_id"] == "987654321"
    assert body["pin_url"] == "https://www.pinterest.com/pin/987654321/"
    assert body["error"] is None
    assert body["attempts"] == 2
    kinds = [t["kind"] for t in body["timeline"]]
    assert kinds[:5] == ["accepted", "released", "attempt_started", "attempt_failed", "failed"]
    assert "published" in kinds
    assert kinds.count("released") == 1
    assert "HTTP 503" in body["timeline"][3]["message"]


async def test_failed_post_shows_error(gw: Gateway) -> None:
    ws, post = await _post(gw)
    pid = uuid.UUID(post["id"])
    await gw.feed(
        PostFailedEvent(workspace_id=ws.id, payload=PostFailed(
            post_id=pid, attempt=1,
            error=PostError(code="board_not_found", message="board gone", retryable=False))),
    )  # fmt: skip
    _, body = await gw.call(ws, "GET", f"/v1/posts/{pid}")
    assert body["status"] == "failed"
    assert body["error"] == {"code": "board_not_found", "message": "board gone", "retryable": False}
    # events of another workspace for this post are ignored
    other = await gw.workspace()
    await gw.feed(
        PostPublishedEvent(workspace_id=other.id, payload=PostPublished(
            post_id=pid, pin_id="1", pin_url="x", board_id="1", published_at=T0)),
    )  # fmt: skip
    _, body = await gw.call(ws, "GET", f"/v1/posts/{pid}")
    assert body["status"] == "failed"


async def test_patch_reschedules_and_edits_until_release(gw: Gateway) -> None:
    ws, post = await _post(gw, scheduled_date=later(3))
    pid = post["id"]
    new_time = (datetime.now(UTC) + timedelta(days=5)).replace(microsecond=0)
    resp, body = await gw.call(
        ws, "PATCH", f"/v1/posts/{pid}",
        json={"scheduled_date": new_time.isoformat(), "title": "New title",
              "pinterest_board_id": "kitchens"},
    )  # fmt: skip
    assert resp.status == 200, body
    assert body["scheduled_date"] == new_time.isoformat().replace("+00:00", "Z")
    assert body["title"] == "New title"
    assert body["pinterest_board_id"] == "714329185762948373"
    assert body["revision"] == 1
    resp, body = await gw.call(ws, "PATCH", f"/v1/posts/{pid}", json={"title": "t" * 101})
    assert (resp.status, body["errors"][0]["field"]) == (422, "title")
    resp, body = await gw.call(ws, "PATCH", f"/v1/posts/{pid}", json={"post_type": "video"})
    assert (resp.status, body["errors"][0]["field"]) == (422, "post_type")
    resp, body = await gw.call(
        ws, "PATCH", f"/v1/posts/{pid}", json={"scheduled_date": "2020-01-01T00:00:00Z"}
    )
    assert (resp.status, body["errors"][0]["field"]) == (422, "scheduled_date")
    resp, body = await gw.call(
        ws, "PATCH", f"/v1/posts/{pid}", json={"media_urls": ["http://10.1.1.1/a.jpg"]}
    )
    assert (resp.status, body["errors"][0]["field"]) == (422, "media_urls[0]")
    # release, then edits and cancels are refused with the reason
    await gw.feed(
        PostDueEvent(workspace_id=ws.id, payload=PostDue(
            post_id=uuid.UUID(pid), due_at=T0, content=CONTENT)),
    )  # fmt: skip
    resp, body = await gw.call(ws, "PATCH", f"/v1/posts/{pid}", json={"title": "late"})
    assert (resp.status, body["code"]) == (409, "post_not_editable")
    assert "released" in body["detail"]
    resp, body = await gw.call(ws, "DELETE", f"/v1/posts/{pid}")
    assert (resp.status, body["code"]) == (409, "post_not_editable")


async def test_patch_and_cancel_emit_commands(gw: Gateway) -> None:
    # stop the relay so the outbox keeps the rows for inspection
    assert gw.runtime.relay is not None
    await gw.runtime.relay.stop()
    ws, post = await _post(gw, scheduled_date=later(3))
    pid = post["id"]
    await gw.call(ws, "PATCH", f"/v1/posts/{pid}", json={"scheduled_date": later(4)})
    resp, body = await gw.call(ws, "DELETE", f"/v1/posts/{pid}")
    assert resp.status == 200
    assert body["status"] == "cancelled"
    resp, _again = await gw.call(ws, "DELETE", f"/v1/posts/{pid}")
    assert resp.status == 200  # cancelling twice is harmless
    assert (await _outbox_types(gw))[-3:] == [
        "post.requested",
        "post.rescheduled",
        "post.cancelled",
    ]
    async with gw.runtime.pool.acquire() as conn:
        body_json = await conn.fetchval(
            "SELECT body FROM outbox WHERE routing_key = 'post.rescheduled'"
        )
    assert b'"revision":0' in body_json  # only the time changed: no content, same revision
    # a cancel the scheduler rejected (already released): the post continues
    await gw.feed(
        PostChangeRejectedEvent(workspace_id=ws.id, payload=PostChangeRejected(
            post_id=uuid.UUID(pid), change="cancel", reason="already released")),
    )  # fmt: skip
    _, body = await gw.call(ws, "GET", f"/v1/posts/{pid}")
    assert body["status"] == "publishing"
    assert body["timeline"][-1]["kind"] == "change_rejected"


async def test_list_filters_cursor_and_export(gw: Gateway) -> None:
    ws = await gw.workspace()
    await gw.connected_profile(ws)
    await gw.connected_profile(ws, name="second")
    ids = []
    for i in range(5):
        profile = "second" if i == 4 else "shop-account"
        resp, body = await gw.call(
            ws, "POST", "/v1/posts",
            json=post_body(profile_name=profile, title=f"p{i}", scheduled_date=later(i + 1)),
        )  # fmt: skip
        ids.append(body["id"])
    seen: list[str] = []
    cursor = None
    while True:
        q = "?limit=2" + (f"&cursor={cursor}" if cursor else "")
        resp, page = await gw.call(ws, "GET", "/v1/posts" + q)
        assert resp.status == 200
        seen += [p["id"] for p in page["data"]]
        if not page["has_more"]:
            break
        cursor = page["next_cursor"]
    assert seen == list(reversed(ids))
    _, page = await gw.call(ws, "GET", "/v1/posts?profile_name=second")
    assert [p["id"] for p in page["data"]] == [ids[4]]
    await gw.call(ws, "DELETE", f"/v1/posts/{ids[0]}")
    _, page = await gw.call(ws, "GET", "/v1/posts?status=cancelled")
    assert [p["id"] for p in page["data"]] == [ids[0]]
    frm = (datetime.now(UTC) + timedelta(days=2, hours=12)).isoformat().replace("+00:00", "Z")
    _, page = await gw.call(ws, "GET", f"/v1/posts?from={frm}")
    assert sorted(p["id"] for p in page["data"]) == sorted(ids[2:])
    resp, bad = await gw.call(ws, "GET", "/v1/posts?status=lost&limit=0&cursor=zz")
    assert resp.status == 422
    assert {e["field"] for e in bad["errors"]} == {"status", "limit"}
    resp, bad = await gw.call(ws, "GET", "/v1/posts?cursor=zz")
    assert (resp.status, bad["errors"][0]["field"]) == (422, "cursor")

    resp, rows = await gw.call(ws, "GET", "/v1/posts/export?format=json&profile_name=shop-account")
    assert resp.status == 200
    assert sorted(r["id"] for r in rows) == sorted(ids[:4])
    resp, text = await gw.call(ws, "GET", "/v1/posts/export?format=csv&status=scheduled")
    assert resp.headers["Content-Type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(text)))
    assert sorted(r["id"] for r in table) == sorted(ids[1:])
    assert table[0]["pinterest_board_name"] == "Living Rooms"


async def test_connections_boards_and_account_read_model(gw: Gateway) -> None:
    assert gw.runtime.relay is not None
    await gw.runtime.relay.stop()
    ws = await gw.workspace()
    resp, profile = await gw.call(ws, "POST", "/v1/profiles", json={"name": "fresh"})
    pid = uuid.UUID(profile["id"])
    assert profile["pinterest"]["status"] == "not_connected"
    resp, start = await gw.call(ws, "POST", "/v1/profiles/fresh/connections/pinterest")
    assert resp.status == 201
    assert start["authorize_url"].startswith(gw.settings.pinterest_oauth_url + "?")
    state = start["authorize_url"].split("state=")[1].split("&")[0]
    claims = signed.verify(gw.settings.oauth_state_secret.get_secret_value().encode(), state)
    assert claims["ws"] == str(ws.id)
    assert claims["pid"] == str(pid)
    assert claims["pname"] == "fresh"
    assert "scope=boards%3Aread" in start["authorize_url"]
    resp, body = await gw.call(ws, "POST", "/v1/profiles/fresh/boards:sync")
    assert (resp.status, body["code"]) == (409, "account_not_connected")

    t = datetime.now(UTC)
    await gw.feed(
        AccountConnectedEvent(workspace_id=ws.id, occurred_at=t, payload=AccountConnected(
            account_id="acc-1", profile_id=pid, username="maker")),
        AccountBoardsSyncedEvent(workspace_id=ws.id, occurred_at=t, payload=AccountBoardsSynced(
            account_id="acc-1", profile_id=pid, boards=[
                Board(id="77", name="Gardens", sections=[{"id": "9", "name": "Roses"}])])),
        # an older sync arriving late is ignored
        AccountBoardsSyncedEvent(workspace_id=ws.id, occurred_at=t - timedelta(hours=1),
            payload=AccountBoardsSynced(account_id="acc-1", profile_id=pid, boards=[])),
        # an older disconnect arriving late does not undo the connection
        AccountDisconnectedEvent(workspace_id=ws.id, occurred_at=t - timedelta(minutes=5),
            payload=AccountDisconnected(account_id="acc-1", profile_id=pid)),
    )  # fmt: skip
    _, profile = await gw.call(ws, "GET", "/v1/profiles/fresh")
    assert profile["pinterest"]["status"] == "connected"
    assert profile["pinterest"]["token_health"] == "ok"
    assert profile["boards_count"] == 1
    _, boards = await gw.call(ws, "GET", "/v1/profiles/fresh/boards")
    assert boards["data"] == [
        {"id": "77", "name": "Gardens", "privacy": None, "sections": [{"id": "9", "name": "Roses"}]}
    ]
    resp, _ = await gw.call(ws, "POST", "/v1/profiles/fresh/boards:sync")
    assert resp.status == 202
    resp, _ = await gw.call(ws, "DELETE", "/v1/profiles/fresh/connections/pinterest")
    assert resp.status == 202
    assert (await _outbox_types(gw))[-2:] == [
        "account.sync_requested",
        "account.disconnect_requested",
    ]
    await gw.feed(
        AccountDisconnectedEvent(workspace_id=ws.id, payload=AccountDisconnected(
            account_id="acc-1", profile_id=pid)),
    )  # fmt: skip
    _, profile = await gw.call(ws, "GET", "/v1/profiles/fresh")
    assert profile["pinterest"]["status"] == "disconnected"
    resp, _ = await gw.call(ws, "DELETE", "/v1/profiles/fresh")
    assert resp.status == 200
    resp, _ = await gw.call(ws, "GET", "/v1/profiles/fresh")
    assert resp.status == 404
