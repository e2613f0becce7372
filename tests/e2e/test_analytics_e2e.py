"""Analytics end to end: publish a pin, move the emulator's clock, watch the figures grow."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from codiv_devtools.system import Client, SystemConfig
from codiv_testsupport import wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def system_config(database_url: str, broker: Any, tmp_path: Path) -> SystemConfig:
    return SystemConfig(
        database_url=database_url,
        amqp_url=broker.url,
        log_dir=tmp_path / "logs",
        exchange=broker.exchange,
        queue_prefix=broker.queue_prefix,
        extra_env={
            # the publisher's collector asks the emulator what time it is
            "ANALYTICS_CLOCK_URL": "emulator",
            "ANALYTICS_POLL_INTERVAL": "0.3",
            "OUTBOX_POLL_INTERVAL": "0.2",
        },
    )


async def test_analytics_appear_and_grow_as_the_clock_advances(client: Client) -> None:
    ws = await client.create_workspace("analytics", plan="pro")
    key = ws["api_key"]
    await client.connect_profile(key, "shop")
    post = await client.api(
        "POST",
        "/v1/posts",
        key,
        {
            "profile_name": "shop",
            "platforms": ["pinterest"],
            "post_type": "image",
            "title": "Analytics pin",
            "media_urls": ["https://cdn.example.com/a.jpg"],
            "pinterest_board_id": "Recipes",
        },
        expect=202,
    )
    path = f"/v1/posts/{post['id']}/analytics"

    async def published() -> bool:
        return (await client.api("GET", f"/v1/posts/{post['id']}", key))["status"] == "published"

    await wait_until(published, timeout=30, interval=0.2)
    today = datetime.now(UTC).date()
    window = f"?from={today}&to={today + timedelta(days=5)}"
    body = await client.api("GET", path + window, key)
    assert body["daily"] == []
    assert body["totals"]["impressions"] == 0
    assert "No figures" in body["note"]

    async def analytics_with(days: int, final: bool = False) -> dict[str, Any] | None:
        got: dict[str, Any] = await client.api("GET", path + window, key)
        if len(got["daily"]) < days:
            return None
        return got if (not final or got["final_through"]) else None

    # An hour after publishing: the first figures (today, still processing).
    await client.emulator("POST", "/clock/advance", {"seconds": 3600 + 60})
    first = await wait_until(lambda: analytics_with(1), timeout=20, interval=0.3)
    assert first["daily"][0]["data_status"] == "PROCESSING"
    assert first["latest_final"] is False
    assert first["totals"]["impressions"] > 0
    assert set(first["metrics"]) == {"impressions", "saves", "pin_clicks", "outbound_clicks"}

    # A day later: a second day; two days later the first day is final.
    await client.emulator("POST", "/clock/advance", {"seconds": 86400})
    second = await wait_until(lambda: analytics_with(2), timeout=20, interval=0.3)
    assert second["totals"]["impressions"] > first["totals"]["impressions"]
    await client.emulator("POST", "/clock/advance", {"seconds": 86400})
    third = await wait_until(lambda: analytics_with(3, final=True), timeout=20, interval=0.3)
    assert third["final_through"] == today.isoformat()
    assert third["daily"][0]["data_status"] == "READY"
    assert third["totals"]["impressions"] > second["totals"]["impressions"]

    # Workspace view and top posts; the account's own daily figures.
    overview = await client.api(
        "GET", f"/v1/analytics?profile_name=shop&from={today}&to={today + timedelta(days=5)}", key
    )
    assert overview["posts"] == 1
    assert overview["top_posts"][0]["post_id"] == post["id"]
    assert overview["totals"]["impressions"] == third["totals"]["impressions"]
    account = await wait_until(lambda: _account_days(client, key), timeout=20, interval=0.3)
    assert account["totals"]["impressions"] > 0

    # More than 90 days in one answer is refused with a clear problem.
    too_long = f"?from={today - timedelta(days=100)}&to={today}"
    problem = await client.api("GET", path + too_long, key, expect=422)
    assert problem["code"] == "range_too_long"
    assert "90 days" in problem["detail"]


async def _account_days(client: Client, key: str) -> dict[str, Any] | None:
    today = datetime.now(UTC).date()
    body: dict[str, Any] = await client.api(
        "GET", f"/v1/profiles/shop/analytics?from={today - timedelta(days=2)}"
        f"&to={today + timedelta(days=3)}", key
    )  # fmt: skip
    return body if body["daily"] and body["totals"]["impressions"] > 0 else None
