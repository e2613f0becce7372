"""POST /v1/posts: every rule's error path (status, code, field) and the accepted answer."""

from __future__ import annotations

import asyncio
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import pytest
from codiv_common.events import (
    AccountNeedsReauth,
    AccountNeedsReauthEvent,
    Board,
    decode_event,
)

from .conftest import Gateway, post_body

pytestmark = pytest.mark.integration


def iso(dt: datetime) -> str:
    return dt.isoformat()


NOW = datetime.now(UTC)

RULES: list[tuple[str, dict[str, Any], int, str, str]] = [
    ("title too long", {"title": "t" * 101}, 422, "validation_error", "title"),
    ("description too long", {"description": "d" * 501}, 422, "validation_error", "description"),
    ("alt text too long", {"pinterest_alt_text": "a" * 501}, 422, "validation_error",
     "pinterest_alt_text"),
    ("link not http", {"pinterest_link": "ftp://shop.example.com/x"}, 422, "validation_error",
     "pinterest_link"),
    ("link too long", {"pinterest_link": "https://shop.example.com/" + "x" * 2030}, 422,
     "validation_error", "pinterest_link"),
    ("media not http", {"media_urls": ["file:///etc/passwd"]}, 422, "validation_error",
     "media_urls[0]"),
    ("ssrf loopback", {"media_urls": ["http://127.0.0.1/a.jpg"]}, 422, "validation_error",
     "media_urls[0]"),
    ("ssrf 10/8", {"media_urls": ["https://151.101.1.1/a.jpg", "http://10.0.0.7/a.jpg"]}, 422,
     "validation_error", "media_urls[1]"),
    ("ssrf metadata", {"media_urls": ["http://169.254.169.254/latest/meta-data/"]}, 422,
     "validation_error", "media_urls[0]"),
    ("ssrf ipv6 loopback", {"media_urls": ["http://[::1]/a.jpg"]}, 422, "validation_error",
     "media_urls[0]"),
    ("ssrf mapped ipv6", {"media_urls": ["http://[::ffff:192.168.0.1]/a.jpg"]}, 422,
     "validation_error", "media_urls[0]"),
    ("ssrf dns to loopback", {"media_urls": ["http://localhost:8080/a.jpg"]}, 422,
     "validation_error", "media_urls[0]"),
    ("ssrf cover", {"post_type": "video", "media_urls": ["https://151.101.1.1/v.mp4"],
                    "pinterest_cover_image_url": "http://192.168.1.1/c.jpg"}, 422,
     "validation_error", "pinterest_cover_image_url"),
    ("video with two media", {"post_type": "video", "media_urls": [
        "https://151.101.1.1/a.mp4", "https://151.101.1.1/b.mp4"]}, 422, "validation_error",
     "media_urls"),
    ("six images", {"media_urls": [f"https://151.101.1.1/{i}.jpg" for i in range(6)]}, 422,
     "validation_error", "media_urls"),
    ("no media", {"media_urls": []}, 422, "validation_error", "media_urls"),
    ("cover on image", {"pinterest_cover_key_frame_time": 1.5}, 422, "validation_error",
     "pinterest_cover_key_frame_time"),
    ("naive scheduled_date", {"scheduled_date": "2030-01-01T10:00:00"}, 422, "validation_error",
     "scheduled_date"),
    ("scheduled_date as number", {"scheduled_date": 1893456000}, 422, "validation_error",
     "scheduled_date"),
    ("scheduled_date in the past", {"scheduled_date": iso(NOW - timedelta(minutes=5))}, 422,
     "validation_error", "scheduled_date"),
    ("scheduled_date over a year", {"scheduled_date": iso(NOW + timedelta(days=367))}, 422,
     "validation_error", "scheduled_date"),
    ("unknown field", {"colour": "red"}, 422, "validation_error", "colour"),
    ("missing profile_name", {"profile_name": None}, 422, "validation_error", "profile_name"),
    ("other platform", {"platforms": ["tiktok"]}, 422, "validation_error", "platforms[0]"),
    ("bad post_type", {"post_type": "story"}, 422, "validation_error", "post_type"),
    ("unknown board", {"pinterest_board_id": "Bathrooms"}, 422, "board_not_found",
     "pinterest_board_id"),
    ("unknown section", {"pinterest_board_section_id": "999"}, 422, "board_section_not_found",
     "pinterest_board_section_id"),
    ("unknown profile", {"profile_name": "nobody"}, 404, "not_found", "profile_name"),
]  # fmt: skip


@pytest.fixture
async def ready(gw: Gateway) -> Any:
    ws = await gw.workspace()
    await gw.connected_profile(ws)
    return ws


async def test_rule_violations_answer_a_precise_problem(gw: Gateway, ready: Any) -> None:
    # One gateway for every case (a database per case would cost seconds, not coverage).
    failures = []
    for case, change, status, code, field in RULES:
        resp, body = await gw.call(ready, "POST", "/v1/posts", json=post_body(**change))
        got = (resp.status, resp.content_type, body.get("code"), body.get("type"))
        want = (status, "application/problem+json", code, f"urn:codiv:problem:{code}")
        fields = [e["field"] for e in body.get("errors", [])]
        if got != want or field not in fields or body.get("status") != status:
            failures.append(f"{case}: got {got} fields {fields}, want {want} field {field}")
    assert not failures, "\n".join(failures)
    # nothing was created
    _, listing = await gw.call(ready, "GET", "/v1/posts")
    assert listing["data"] == []


async def test_several_field_errors_come_together(gw: Gateway, ready: Any) -> None:
    resp, body = await gw.call(
        ready, "POST", "/v1/posts", json=post_body(title="t" * 101, description="d" * 501, x=1)
    )
    assert resp.status == 422
    assert {e["field"] for e in body["errors"]} == {"title", "description", "x"}
    assert "at most 100 characters" in json.dumps(body)


async def test_unknown_board_lists_the_profiles_boards(gw: Gateway, ready: Any) -> None:
    _, body = await gw.call(ready, "POST", "/v1/posts", json=post_body(pinterest_board_id="Nope"))
    assert {b["name"] for b in body["boards"]} == {"Living Rooms", "Kitchens"}


async def test_ambiguous_board_name_lists_candidates(gw: Gateway) -> None:
    ws = await gw.workspace()
    boards = [Board(id="11", name="Ideas"), Board(id="12", name="IDEAS"), Board(id="13", name="x")]
    await gw.connected_profile(ws, boards=boards)
    resp, body = await gw.call(ws, "POST", "/v1/posts", json=post_body(pinterest_board_id="ideas"))
    assert resp.status == 422
    assert body["code"] == "board_ambiguous"
    assert body["errors"][0]["field"] == "pinterest_board_id"
    assert sorted(c["id"] for c in body["candidates"]) == ["11", "12"]


async def test_board_name_resolves_case_insensitively(gw: Gateway, ready: Any) -> None:
    resp, body = await gw.call(
        ready, "POST", "/v1/posts", json=post_body(pinterest_board_id="living rooms")
    )
    assert resp.status == 202, body
    assert body["pinterest_board_id"] == "714329185762948372"
    assert body["pinterest_board_name"] == "Living Rooms"


async def test_profile_without_account_or_needing_reauth_gets_409(gw: Gateway) -> None:
    ws = await gw.workspace()
    await gw.call(ws, "POST", "/v1/profiles", json={"name": "bare"})
    resp, body = await gw.call(ws, "POST", "/v1/posts", json=post_body(profile_name="bare"))
    assert (resp.status, body["code"]) == (409, "account_not_connected")
    assert "/v1/profiles/bare/connections/pinterest" in body["detail"]
    assert body["errors"][0]["field"] == "profile_name"

    profile_id = await gw.connected_profile(ws, name="stale")
    _, profile = await gw.call(ws, "GET", "/v1/profiles/stale")
    await gw.feed(
        AccountNeedsReauthEvent(
            workspace_id=ws.id,
            payload=AccountNeedsReauth(
                account_id=profile["pinterest"]["account_id"],
                profile_id=profile_id,
                reason="refresh token revoked",
            ),
        )
    )
    resp, body = await gw.call(ws, "POST", "/v1/posts", json=post_body(profile_name="stale"))
    assert (resp.status, body["code"]) == (409, "account_needs_reauth")
    assert "connections/pinterest" in body["detail"]
    _, profile = await gw.call(ws, "GET", "/v1/profiles/stale")
    assert profile["pinterest"]["token_health"] == "needs_reauth"


async def test_malformed_json_oversized_body_and_non_object(gw: Gateway, ready: Any) -> None:
    resp, body = await gw.call(ready, "POST", "/v1/posts", data=b'{"profile_name": ')
    assert (resp.status, body["code"]) == (400, "invalid_json")
    resp, body = await gw.call(ready, "POST", "/v1/posts", data=b"")
    assert (resp.status, body["code"]) == (400, "invalid_json")
    resp, body = await gw.call(
        ready, "POST", "/v1/posts", data=io.BytesIO(b"{" + b" " * (1024**2 + 10) + b"}")
    )
    assert (resp.status, body["code"]) == (413, "payload_too_large")
    resp, body = await gw.call(ready, "POST", "/v1/posts", json=[1, 2])
    assert (resp.status, body["code"]) == (422, "validation_error")
    resp, body = await gw.call(ready, "POST", "/v1/posts", json=post_body(title="a\x00b"))
    assert (resp.status, body["errors"][0]["field"]) == (422, "title")


async def test_readme_example_without_content_type_is_accepted(gw: Gateway, ready: Any) -> None:
    # curl -d sends application/x-www-form-urlencoded; the body is JSON all the same.
    raw = json.dumps(post_body(media_urls=["https://cdn.example.com/room.jpg"]))
    resp, body = await gw.call(
        ready,
        "POST",
        "/v1/posts",
        data=raw,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert resp.status == 202, body
    assert body["status"] == "scheduled"
    assert body["pinterest_board_name"] == "Living Rooms"


async def test_accepted_post_answer_warnings_and_outbox_event(gw: Gateway, ready: Any) -> None:
    connection = await aio_pika.connect(gw.settings.amqp_url.get_secret_value())
    try:
        channel = await connection.channel()
        exchange = await channel.get_exchange(gw.settings.amqp_exchange)
        queue = await channel.declare_queue(f"{gw.settings.amqp_queue_prefix}test", durable=False)
        await queue.bind(exchange, "post.requested")
        when = (
            (NOW + timedelta(days=2))
            .replace(microsecond=0)
            .astimezone(__import__("datetime").timezone(timedelta(hours=2)))
        )
        body_in = post_body(
            pinterest_alt_text=None,
            pinterest_link=None,
            description="",
            media_urls=["https://151.101.1.1/a.jpg", "https://151.101.1.1/b.jpg"],
            scheduled_date=when.isoformat(),
            pinterest_board_section_id="5001",
        )
        resp, body = await gw.call(ready, "POST", "/v1/posts", json=body_in)
        assert resp.status == 202, body
        assert body["scheduled_date"] == when.astimezone(UTC).isoformat().replace("+00:00", "Z")
        assert {w["code"] for w in body["warnings"]} == {
            "missing_alt_text",
            "empty_description",
            "missing_link",
        }
        assert resp.headers["RateLimit-Remaining"].isdigit()
        message = None
        for _ in range(100):
            message = await queue.get(no_ack=True, fail=False)
            if message:
                break
            await asyncio.sleep(0.05)
        assert message is not None, "post.requested was not relayed from the outbox"
        event = decode_event(message.body)
        assert event.type == "post.requested"
        assert str(event.payload.post_id) == body["id"]  # type: ignore[union-attr]
        content = event.payload.content  # type: ignore[union-attr]
        assert content.board_id == "714329185762948372"
        assert content.board_section_id == "5001"
        assert content.pinterest_account_id
        assert len(content.media_urls) == 2
        assert event.payload.scheduled_at == when  # type: ignore[union-attr]
    finally:
        await connection.close()
