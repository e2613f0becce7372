"""The publisher's metric collector against the emulator: plan, growth, clamp, pacing."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from codiv_common.events import (
    AccountConnected,
    AccountConnectedEvent,
    AccountDisconnected,
    AccountDisconnectedEvent,
)
from codiv_pinterest.emulator.config import EmulatorConfig
from codiv_testsupport import free_port, wait_until

from .conftest import MetricsTap

pytestmark = pytest.mark.integration

VIDEO = b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 4000
FAST = {"analytics_clock_url": "emulator", "analytics_poll_interval": 0.2}
PIN_KEYS = {"IMPRESSION", "SAVE", "PIN_CLICK", "OUTBOUND_CLICK"}
VIDEO_KEYS = PIN_KEYS | {
    "VIDEO_MRC_VIEW",
    "VIDEO_AVG_WATCH_TIME",
    "VIDEO_START",
    "QUARTILE_95_PERCENT_VIEW",
}


@pytest.fixture
async def media_server() -> AsyncIterator[str]:
    async def video(_: web.Request) -> web.Response:
        return web.Response(body=VIDEO, content_type="video/mp4")

    app = web.Application()
    app.router.add_get("/v.mp4", video)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def _plan(db: asyncpg.Connection, post_id: uuid.UUID) -> asyncpg.Record:
    row = await db.fetchrow("SELECT * FROM publisher.metric_plan WHERE post_id = $1", post_id)
    assert row is not None
    return row


async def _advance(h: Any, seconds: float) -> None:
    await h.admin("POST", "/clock/advance", {"seconds": seconds})


async def test_pin_analytics_follow_the_plan_grow_and_clamp(
    harness: Any, metrics_tap: MetricsTap, db: asyncpg.Connection, media_server: str
) -> None:
    year = 400 * 86400  # tokens outlive the clock jumps (the stand-in auth never refreshes)
    config = EmulatorConfig(
        media={"seconds": 0},
        tokens={"access_token_seconds": year, "refresh_token_seconds": year},
    )
    h = await harness(config, **FAST)
    image = h.due(h.content())
    video = h.due(h.content(post_type="video", media_urls=[media_server + "/v.mp4"]))
    ids = [image.payload.post_id, video.payload.post_id]
    await h.send(image, video)
    await h.wait_outcomes(ids)
    assert all(h.outcome(p).type == "post.published" for p in ids)

    # The plan row was written with the publication: first look an hour later.
    for post_id in ids:
        row = await _plan(db, post_id)
        published = h.outcome(post_id).payload.published_at
        assert row["published_at"] == published
        assert row["next_collect_at"] == published + dt.timedelta(hours=1)
        assert row["pin_id"] == h.outcome(post_id).payload.pin_id
    assert (await _plan(db, ids[1]))["post_type"] == "video"

    # The account is collected at once (daily), the pins not before their hour.
    await wait_until(lambda: metrics_tap.of("account.metrics"), timeout=15)
    account = metrics_tap.of("account.metrics")[0].payload
    assert account.account_id == h.account.account_id
    assert len(account.daily) == 90  # the whole 90-day window, clamped
    assert set(account.daily[-1].metrics) >= {"IMPRESSION", "SAVE", "ENGAGEMENT"}
    await asyncio.sleep(0.8)
    assert not metrics_tap.of("pin.metrics")

    # +1 h: the first collection, today only, still processing.
    await _advance(h, 3600 + 60)
    await wait_until(lambda: len(metrics_tap.of("pin.metrics")) == 2, timeout=15)
    first = {e.payload.post_id: e.payload for e in metrics_tap.of("pin.metrics")}
    assert set(first[ids[0]].daily[0].metrics) == PIN_KEYS
    assert set(first[ids[1]].daily[0].metrics) == VIDEO_KEYS
    assert [d.data_status for d in first[ids[0]].daily] == ["PROCESSING"]
    assert (await _plan(db, ids[0]))["stage"] == 1

    # +1 day, +2 days: more days; the publication day turns final and is not asked again.
    totals = [sum(d.metrics["IMPRESSION"] for d in first[ids[0]].daily)]
    for n in (2, 3):
        await _advance(h, 86400)
        await wait_until(
            lambda n=n: len(metrics_tap.of("pin.metrics", post_id=ids[0])) == n, timeout=15
        )
        latest = metrics_tap.of("pin.metrics", post_id=ids[0])[-1]
        totals.append(sum(d.metrics["IMPRESSION"] for d in latest.payload.daily))
    published_on = h.outcome(ids[0]).payload.published_at.date()
    third = metrics_tap.of("pin.metrics", post_id=ids[0])[-1].payload
    assert third.daily[0].date == published_on.isoformat()
    assert third.daily[0].data_status == "READY"
    assert totals == sorted(totals), totals  # growing
    assert totals[-1] > totals[0], totals
    row = await _plan(db, ids[0])
    assert row["final_through"] == published_on
    assert row["stage"] == 3

    # The next look starts after the final day (it is stored once, never re-sent).
    await _advance(h, 86400)
    await wait_until(lambda: len(metrics_tap.of("pin.metrics", post_id=ids[0])) == 4, timeout=15)
    fourth = metrics_tap.of("pin.metrics", post_id=ids[0])[-1].payload
    assert fourth.daily[0].date > published_on.isoformat()

    # Far past 90 days: the request is clamped to Pinterest's window (the emulator
    # refuses anything older) and the plan ends.
    await _advance(h, 100 * 86400)
    await wait_until(lambda: len(metrics_tap.of("pin.metrics", post_id=ids[0])) == 5, timeout=15)
    last = metrics_tap.of("pin.metrics", post_id=ids[0])[-1].payload
    today = dt.date.fromisoformat((await h.admin("GET", "/clock"))["now"][:10])
    assert dt.date.fromisoformat(last.daily[0].date) >= today - dt.timedelta(days=89)
    assert len(last.daily) <= 90
    row = await _plan(db, ids[0])
    assert row["next_collect_at"] is None
    assert row["failures"] == 0
    assert row["last_error"] is None


async def test_account_events_switch_daily_account_collection(
    harness: Any, db: asyncpg.Connection
) -> None:
    h = await harness(analytics_enabled=False)
    profile = uuid.uuid4()
    now = dt.datetime.now(dt.UTC)

    def connected(at: dt.datetime) -> AccountConnectedEvent:
        return AccountConnectedEvent(
            workspace_id=h.workspace_id,
            occurred_at=at,
            payload=AccountConnected(account_id="acc-1", profile_id=profile),
        )

    await h.publisher_events.publish(connected(now))

    async def state() -> asyncpg.Record | None:
        return await db.fetchrow(
            "SELECT active, profile_id, state_at FROM publisher.analytics_accounts"
            " WHERE account_id = 'acc-1'"
        )

    await wait_until(state, timeout=10)
    assert (await state())["active"] is True  # type: ignore[index]
    assert (await state())["profile_id"] == profile  # type: ignore[index]
    await h.publisher_events.publish(
        AccountDisconnectedEvent(
            workspace_id=h.workspace_id,
            occurred_at=now + dt.timedelta(seconds=5),
            payload=AccountDisconnected(account_id="acc-1", profile_id=profile),
        )
    )

    async def inactive() -> bool:
        row = await state()
        return row is not None and row["active"] is False

    await wait_until(inactive, timeout=10)
    # An older connected event (redelivered, out of order) changes nothing.
    await h.publisher_events.publish(connected(now + dt.timedelta(seconds=1)))
    await asyncio.sleep(1.0)
    assert await inactive()


async def test_pacing_200_pins_of_one_account_stays_under_the_analytics_limit(
    harness: Any, metrics_tap: MetricsTap, db: asyncpg.Connection
) -> None:
    # Scaled down: 40 analytics calls per 1 s window at the emulator, 35 per second paced.
    per_second = 35
    config = EmulatorConfig(
        rate_limits={
            "per_user": {"org_read": 100000, "org_write": 100000, "org_analytics": 40},
            "window_seconds": 1,
        }
    )
    h = await harness(
        config,
        writes_per_minute=12000,
        analytics_calls_per_minute=per_second * 60,
        analytics_max_wait=5,
        **FAST,
    )
    dues = [h.due(h.content()) for _ in range(200)]
    ids = [d.payload.post_id for d in dues]
    await h.send(*dues)
    await h.wait_outcomes(ids, timeout=60)
    assert all(h.outcome(p).type == "post.published" for p in ids)
    assert await db.fetchval("SELECT count(*) FROM publisher.metric_plan") == 200
    await wait_until(lambda: metrics_tap.of("account.metrics"), timeout=15)

    started = time.monotonic()
    await _advance(h, 3600 + 60)
    await wait_until(lambda: len(metrics_tap.of("pin.metrics")) >= 200, timeout=60)
    elapsed = time.monotonic() - started
    stats = await h.stats()
    limited = stats["rate_limited"]
    print(f"200 pins collected in {elapsed:.1f} s, 429s: {limited}")
    assert not any(v.get("org_analytics") for v in limited.values()), limited
    assert len({e.payload.post_id for e in metrics_tap.of("pin.metrics")}) == 200
    # Paced, not a burst: 199 gaps of at least 1/35 s between the calls.
    assert elapsed >= 199 / per_second * 0.95, elapsed
    assert (
        await db.fetchval(
            "SELECT count(*) FROM publisher.metric_plan WHERE stage = 1 AND failures = 0"
        )
        == 200
    )
