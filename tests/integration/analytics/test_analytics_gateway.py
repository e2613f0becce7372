"""The gateway's analytics read model and API, fed pin.metrics / account.metrics events."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from codiv_common.events import (
    AccountMetrics,
    AccountMetricsEvent,
    MetricPoint,
    PinMetrics,
    PinMetricsEvent,
    PostPublished,
    PostPublishedEvent,
)
from integration.gateway.conftest import Gateway, Workspace, post_body

pytestmark = pytest.mark.integration

TODAY = datetime.now(UTC).date()
D0 = TODAY - timedelta(days=3)
D1 = TODAY - timedelta(days=2)
T0 = datetime.now(UTC) - timedelta(hours=1)


def point(day: date, status: str, **metrics: float) -> MetricPoint:
    return MetricPoint(date=day.isoformat(), data_status=status, metrics=metrics)


async def published_post(gw: Gateway, ws: Workspace, **over: Any) -> tuple[str, str]:
    resp, body = await gw.call(ws, "POST", "/v1/posts", json=post_body(**over))
    assert resp.status == 202, body
    pin_id = str(10**18 + uuid.uuid4().int % 10**6)
    await gw.feed(
        PostPublishedEvent(
            workspace_id=ws.id,
            payload=PostPublished(
                post_id=uuid.UUID(body["id"]),
                pin_id=pin_id,
                pin_url=f"https://www.pinterest.com/pin/{pin_id}/",
                board_id=body["pinterest_board_id"],
                published_at=datetime.combine(D0, datetime.min.time(), UTC),
            ),
        )
    )
    return body["id"], pin_id


def metrics_event(
    ws: Workspace, post_id: str, pin_id: str, at: datetime, *days: MetricPoint
) -> PinMetricsEvent:
    return PinMetricsEvent(
        workspace_id=ws.id,
        payload=PinMetrics(
            post_id=uuid.UUID(post_id),
            pin_id=pin_id,
            account_id="acc-1",
            collected_at=at,
            daily=list(days),
        ),
    )


async def analytics(gw: Gateway, ws: Workspace, post_id: str, query: str = "") -> Any:
    resp, body = await gw.call(ws, "GET", f"/v1/posts/{post_id}/analytics{query}")
    assert resp.status == 200, body
    return body


async def test_post_analytics_replace_days_until_final(gw: Gateway) -> None:
    ws = await gw.workspace()
    await gw.connected_profile(ws, account_id="acc-1")
    post_id, pin_id = await published_post(gw, ws)

    first = metrics_event(
        ws, post_id, pin_id, T0,
        point(D0 - timedelta(days=1), "BEFORE_PIN_CREATED"),
        point(D0, "READY", IMPRESSION=100, SAVE=3, PIN_CLICK=9, OUTBOUND_CLICK=4),
        point(D1, "PROCESSING", IMPRESSION=50, SAVE=1, PIN_CLICK=2, OUTBOUND_CLICK=1),
    )  # fmt: skip
    await gw.feed(first)
    body = await analytics(gw, ws, post_id)
    assert body["from"] == D0.isoformat()  # default: from the publication day
    assert body["to"] == TODAY.isoformat()
    assert body["metrics"] == ["impressions", "saves", "pin_clicks", "outbound_clicks"]
    assert [d["date"] for d in body["daily"]] == [D0.isoformat(), D1.isoformat()]
    assert body["daily"][0]["metrics"] == {
        "impressions": 100, "saves": 3, "pin_clicks": 9, "outbound_clicks": 4,
    }  # fmt: skip
    assert body["totals"] == {
        "impressions": 150,
        "saves": 4,
        "pin_clicks": 11,
        "outbound_clicks": 5,
    }
    assert body["final_through"] == D0.isoformat()
    assert body["pending_days"] == [D1.isoformat()]
    assert body["latest_final"] is False
    assert body["daily"][1]["data_status"] == "PROCESSING"

    # A later collection: the PROCESSING day is replaced, the READY day never again.
    await gw.feed(
        metrics_event(
            ws,
            post_id,
            pin_id,
            T0 + timedelta(minutes=30),
            point(D0, "READY", IMPRESSION=999, SAVE=0, PIN_CLICK=0, OUTBOUND_CLICK=0),
            point(D1, "READY", IMPRESSION=70, SAVE=2, PIN_CLICK=3, OUTBOUND_CLICK=1),
        )
    )
    # An older collection arriving late changes nothing either.
    await gw.feed(
        metrics_event(
            ws,
            post_id,
            pin_id,
            T0 - timedelta(minutes=30),
            point(D1, "PROCESSING", IMPRESSION=1, SAVE=0, PIN_CLICK=0, OUTBOUND_CLICK=0),
        )
    )
    await gw.feed(first)  # a duplicate (same event id): nothing
    body = await analytics(gw, ws, post_id)
    assert body["totals"]["impressions"] == 170
    assert body["latest_final"] is True
    assert body["pending_days"] == []
    assert body["final_through"] == D1.isoformat()
    assert body["note"] is None

    # Tenant isolation: another workspace sees nothing and cannot write into the post.
    other = await gw.workspace()
    resp, problem = await gw.call(other, "GET", f"/v1/posts/{post_id}/analytics")
    assert resp.status == 404
    assert problem["code"] == "not_found"
    intruder = metrics_event(
        other, post_id, pin_id, T0 + timedelta(hours=2), point(D1, "PROCESSING", IMPRESSION=5)
    )
    await gw.feed(intruder)
    assert (await analytics(gw, ws, post_id))["totals"]["impressions"] == 170


async def test_post_analytics_ranges_answer_clearly(gw: Gateway) -> None:
    ws = await gw.workspace()
    await gw.connected_profile(ws, account_id="acc-1")
    post_id, pin_id = await published_post(gw, ws)
    await gw.feed(metrics_event(ws, post_id, pin_id, T0, point(D0, "READY", IMPRESSION=10)))

    resp, body = await gw.call(ws, "GET", f"/v1/posts/{post_id}/analytics?from={TODAY}&to={D0}")
    assert resp.status == 422
    assert resp.content_type == "application/problem+json"
    assert body["code"] == "validation_error"
    assert body["errors"][0]["field"] == "from"
    assert "reversed" in body["detail"]

    start = TODAY - timedelta(days=90)
    resp, body = await gw.call(ws, "GET", f"/v1/posts/{post_id}/analytics?from={start}")
    assert resp.status == 422
    assert body["code"] == "range_too_long"
    assert "91 days" in body["detail"]
    assert "90 days" in body["detail"]
    assert body["max_days"] == 90
    ok_start = TODAY - timedelta(days=89)
    assert (await analytics(gw, ws, post_id, f"?from={ok_start}"))["from"] == ok_start.isoformat()

    resp, body = await gw.call(ws, "GET", f"/v1/posts/{post_id}/analytics?from=yesterday")
    assert resp.status == 422
    assert body["errors"][0]["field"] == "from"

    empty_to = D0 - timedelta(days=10)
    body = await analytics(gw, ws, post_id, f"?from={D0 - timedelta(days=20)}&to={empty_to}")
    assert body["daily"] == []
    assert body["totals"] == {
        "impressions": 0, "saves": 0, "pin_clicks": 0, "outbound_clicks": 0,
    }  # fmt: skip
    assert body["final_through"] is None
    assert "No figures" in body["note"]

    # A post not published yet answers an empty series with an explanation.
    resp, scheduled = await gw.call(
        ws, "POST", "/v1/posts",
        json=post_body(scheduled_date=(datetime.now(UTC) + timedelta(days=2)).isoformat()),
    )  # fmt: skip
    assert resp.status == 202
    body = await analytics(gw, ws, scheduled["id"])
    assert body["daily"] == []
    assert "not published yet" in body["note"]
    resp, _ = await gw.call(ws, "GET", "/v1/posts/not-a-uuid/analytics")
    assert resp.status == 404


async def test_workspace_analytics_groups_top_posts_and_accounts(gw: Gateway) -> None:
    ws = await gw.workspace()
    await gw.connected_profile(ws, account_id="acc-1")
    image_id, image_pin = await published_post(gw, ws)
    video_id, video_pin = await published_post(
        gw, ws, post_type="video", media_urls=["https://151.101.1.1/v.mp4"],
        pinterest_board_id="714329185762948373",
    )  # fmt: skip
    await gw.feed(
        metrics_event(
            ws, image_id, image_pin, T0,
            point(D0, "READY", IMPRESSION=100, SAVE=10, PIN_CLICK=5, OUTBOUND_CLICK=1),
            point(D1, "READY", IMPRESSION=100, SAVE=10, PIN_CLICK=5, OUTBOUND_CLICK=1),
        ),
        metrics_event(
            ws, video_id, video_pin, T0,
            point(D0, "READY", IMPRESSION=300, SAVE=1, PIN_CLICK=1, OUTBOUND_CLICK=0,
                  VIDEO_MRC_VIEW=40, VIDEO_START=10, VIDEO_AVG_WATCH_TIME=2.0,
                  QUARTILE_95_PERCENT_VIEW=3),
            point(D1, "PROCESSING", IMPRESSION=100, SAVE=1, PIN_CLICK=1, OUTBOUND_CLICK=0,
                  VIDEO_MRC_VIEW=20, VIDEO_START=30, VIDEO_AVG_WATCH_TIME=6.0,
                  QUARTILE_95_PERCENT_VIEW=1),
        ),
    )  # fmt: skip
    video = await analytics(gw, ws, video_id)
    assert "video_views" in video["metrics"]
    assert video["totals"]["video_views"] == 60
    assert video["totals"]["video_avg_watch_time"] == 5.0  # (2*10 + 6*30) / 40

    resp, body = await gw.call(ws, "GET", f"/v1/analytics?from={D0}&to={TODAY}&metric=saves")
    assert resp.status == 200, body
    assert body["posts"] == 2
    assert body["totals"]["impressions"] == 600
    assert body["totals"]["video_avg_watch_time"] == 5.0
    assert [g["key"] for g in body["groups"]] == [D0.isoformat(), D1.isoformat()]
    assert body["groups"][0]["metrics"]["impressions"] == 400
    assert [t["post_id"] for t in body["top_posts"]] == [image_id, video_id]  # by saves
    assert body["top_posts"][0]["board_name"] == "Living Rooms"

    resp, body = await gw.call(
        ws, "GET", f"/v1/analytics?from={D0}&to={TODAY}&group_by=board&profile_name=shop-account"
    )
    assert resp.status == 200
    boards = {g["label"]: g for g in body["groups"]}
    assert boards["Kitchens"]["metrics"]["impressions"] == 400
    assert boards["Living Rooms"]["posts"] == 1
    resp, body = await gw.call(ws, "GET", f"/v1/analytics?from={D0}&group_by=post&limit=1")
    assert [g["key"] for g in body["groups"]] == [video_id]  # by impressions
    resp, body = await gw.call(ws, "GET", "/v1/analytics?profile_name=nope")
    assert resp.status == 404
    resp, body = await gw.call(ws, "GET", "/v1/analytics?group_by=week")
    assert resp.status == 422
    other = await gw.workspace()
    resp, body = await gw.call(other, "GET", f"/v1/analytics?from={D0}")
    assert body["posts"] == 0
    assert body["top_posts"] == []
    assert body["note"]

    # Account analytics, per profile.
    await gw.feed(
        AccountMetricsEvent(
            workspace_id=ws.id,
            payload=AccountMetrics(
                account_id="acc-1",
                collected_at=T0,
                daily=[
                    point(D0, "READY", IMPRESSION=1000, ENGAGEMENT=40, SAVE=5),
                    point(D1, "PROCESSING", IMPRESSION=500, ENGAGEMENT=20, SAVE=2),
                ],
            ),
        )
    )
    resp, body = await gw.call(ws, "GET", f"/v1/profiles/shop-account/analytics?from={D0}")
    assert resp.status == 200, body
    assert body["username"] == "shop"
    assert body["totals"]["impressions"] == 1500
    assert body["totals"]["engagements"] == 60
    assert body["pending_days"] == [D1.isoformat()]
    resp, _ = await gw.call(other, "GET", "/v1/profiles/shop-account/analytics")
    assert resp.status == 404
    resp, _ = await gw.call(ws, "POST", "/v1/profiles", json={"name": "empty"})
    resp, body = await gw.call(ws, "GET", "/v1/profiles/empty/analytics")
    assert body["daily"] == []
    assert "No Pinterest account" in body["note"]

    resp, spec = await gw.call(None, "GET", "/openapi.json")
    for path in (
        "/v1/posts/{post_id}/analytics",
        "/v1/analytics",
        "/v1/profiles/{profile_name}/analytics",
    ):
        assert "get" in spec["paths"][path]
