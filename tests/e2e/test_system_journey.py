"""The first pin, end to end: every service a process, the emulator as Pinterest."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from codiv_devtools.system import Client
from codiv_testsupport import wait_until

pytestmark = pytest.mark.e2e


async def _final(client: Client, key: str, post_id: str, timeout: float = 30) -> dict:  # type: ignore[type-arg]
    async def done() -> dict | None:  # type: ignore[type-arg]
        post = await client.api("GET", f"/v1/posts/{post_id}", key)
        return post if post["status"] in ("published", "failed", "cancelled") else None

    result: dict = await wait_until(done, timeout=timeout, interval=0.2)  # type: ignore[type-arg]
    return result


async def test_connect_then_publish_now_and_scheduled(client: Client) -> None:
    ws = await client.create_workspace("journey", plan="pro")
    key = ws["api_key"]
    profile = await client.connect_profile(key, "shop-account")
    assert profile["pinterest"]["status"] == "connected"
    boards = await client.api("GET", "/v1/profiles/shop-account/boards", key)
    board = next(b for b in boards["data"] if b["name"] == "Recipes")

    now_post = await client.api(
        "POST",
        "/v1/posts",
        key,
        {
            "profile_name": "shop-account",
            "platforms": ["pinterest"],
            "post_type": "image",
            "title": "Green salad",
            "description": "Fresh and quick",
            "media_urls": ["https://cdn.example.com/salad.jpg"],
            "pinterest_board_id": "recipes",
            "pinterest_link": "https://shop.example.com/salad",
            "pinterest_alt_text": "A bowl of green salad",
        },
        expect=202,
    )
    assert now_post["pinterest_board_id"] == board["id"]
    assert now_post["pinterest_board_name"] == "Recipes"
    due = datetime.now(UTC) + timedelta(seconds=3)
    later_post = await client.api(
        "POST",
        "/v1/posts",
        key,
        {
            "profile_name": "shop-account",
            "platforms": ["pinterest"],
            "post_type": "image",
            "description": "Later",
            "media_urls": ["https://cdn.example.com/a.jpg", "https://cdn.example.com/b.jpg"],
            "pinterest_board_id": board["id"],
            "scheduled_date": due.isoformat(),
        },
        expect=202,
    )
    first = await _final(client, key, now_post["id"])
    assert first["status"] == "published", first
    second = await _final(client, key, later_post["id"])
    assert second["status"] == "published", second

    pins = await client.emulator("GET", "/pins")
    items = pins["items"] if isinstance(pins, dict) and "items" in pins else pins
    made = {p["id"]: p for p in items}
    assert first["pin_id"] in made
    assert second["pin_id"] in made
    assert len(made) == 2, "exactly two pins, no duplicate"
    events = [entry for entry in first["timeline"]]
    assert len(events) >= 3, events  # accepted, released, attempt, published
    pin = made[first["pin_id"]]
    assert pin["title"] == "Green salad"
    assert pin["link"] == "https://shop.example.com/salad"
    assert pin["board_id"] == board["id"]
