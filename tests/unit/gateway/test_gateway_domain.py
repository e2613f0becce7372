"""Pure gateway logic: keys, windows, rules, boards, status transitions, sniffing, cursors."""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta

import pytest
from codiv_gateway import domain
from codiv_gateway.domain import BoardRef, Problem


def test_api_keys_are_random_prefixed_and_parsed_strictly() -> None:
    a, b = domain.generate_api_key(), domain.generate_api_key()
    assert a.key != b.key
    assert a.key.startswith("cdv_live_")
    assert a.prefix == a.key[:15]
    assert a.key_hash == domain.hash_api_key(a.key) != a.key
    assert domain.parse_bearer(f"Bearer {a.key}") == a.key
    assert domain.parse_bearer(f"bearer  {a.key} ") == a.key
    for bad in (None, "", a.key, f"Basic {a.key}", "Bearer cdv_live_x", f"Bearer {a.key}!"):
        assert domain.parse_bearer(bad) is None


def test_month_and_window_boundaries() -> None:
    dec = datetime(2026, 12, 31, 23, 59, tzinfo=UTC)
    assert domain.month_start(dec).isoformat() == "2026-12-01"
    assert domain.next_month_start(dec) == datetime(2027, 1, 1, tzinfo=UTC)
    assert domain.window_start(datetime(2026, 1, 1, 0, 1, 59, tzinfo=UTC), 60).second == 0


def test_schedule_bounds() -> None:
    now = datetime(2026, 5, 1, 12, tzinfo=UTC)
    assert domain.schedule_errors(now - timedelta(seconds=59), now) == []
    assert domain.schedule_errors(now - timedelta(seconds=61), now)[0].field == "scheduled_date"
    assert domain.schedule_errors(now + timedelta(days=364), now) == []
    assert domain.schedule_errors(now + timedelta(days=366), now)


def test_board_resolution() -> None:
    boards = [BoardRef("1", "Ideas"), BoardRef("2", "Kitchen", (("9", "Tiles"),))]
    assert domain.resolve_board("2", boards, "p").name == "Kitchen"
    assert domain.resolve_board("  KITCHEN ", boards, "p").id == "2"
    with pytest.raises(Problem) as info:
        domain.resolve_board("bath", boards, "p")
    assert info.value.code == "board_not_found"
    assert info.value.extra["boards"] == [
        {"id": "1", "name": "Ideas"},
        {"id": "2", "name": "Kitchen"},
    ]
    with pytest.raises(Problem) as info:
        domain.resolve_board("ideas", [*boards, BoardRef("3", "IDEAS")], "p")
    assert info.value.code == "board_ambiguous"
    with pytest.raises(Problem):
        domain.check_section("8", boards[1])
    domain.check_section("9", boards[1])


@pytest.mark.parametrize(
    ("current", "event", "expected"),
    [
        ("scheduled", "post.due", "publishing"),
        ("cancelled", "post.due", "publishing"),
        ("published", "post.due", None),
        ("failed", "post.publishing", None),
        ("publishing", "post.failed", "failed"),
        ("published", "post.failed", None),
        ("failed", "post.published", "published"),
        ("cancelled", "post.change_rejected", "publishing"),
        ("scheduled", "post.change_rejected", None),
    ],
)
def test_status_transitions(current: str, event: str, expected: str | None) -> None:
    payload = {
        "attempt": 1,
        "pin_id": "5",
        "error": {"code": "x", "message": "y"},
        "change": "cancel",
        "reason": "r",
    }
    change = domain.status_change(current, event, payload)
    assert change is not None
    assert change.status == expected


def test_sniff_media() -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + struct.pack(">II", 1000, 1500)
    assert domain.sniff_media(png) == domain.Sniffed("image", "png", 1000, 1500)
    gif = b"GIF89a" + struct.pack("<HH", 20, 30)
    assert domain.sniff_media(gif).width == 20
    sof = b"\xff\xc0" + struct.pack(">HBHH", 17, 8, 900, 600)
    jpeg = b"\xff\xd8" + b"\xff\xe0" + struct.pack(">H", 4) + b"JF" + sof + b"\x00" * 10
    assert domain.sniff_media(jpeg) == domain.Sniffed("image", "jpeg", 600, 900)
    assert domain.sniff_media(b"\x00\x00\x00\x18ftypisom" + b"\x00" * 8).kind == "video"
    assert domain.sniff_media(b"<html>").kind == "unknown"
    assert {f.code for f in domain.image_findings("f", 600, 600)} == {
        "aspect_ratio_not_2_3",
        "image_too_small",
    }
    assert domain.image_findings("f", 1000, 1500) == []


def test_cursor_round_trip_and_garbage() -> None:
    now = datetime.now(UTC)
    assert domain.decode_cursor(domain.encode_cursor(now, "abc")) == (now, "abc")
    with pytest.raises(Problem):
        domain.decode_cursor("not-a-cursor")


def test_request_hash_ignores_key_order_not_values() -> None:
    a = domain.request_hash("POST", "/v1/posts", {"a": 1, "b": 2})
    assert a == domain.request_hash("POST", "/v1/posts", {"b": 2, "a": 1})
    assert a != domain.request_hash("POST", "/v1/posts", {"a": 1, "b": 3})
    assert a != domain.request_hash("POST", "/v1/profiles", {"a": 1, "b": 2})
