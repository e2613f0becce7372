"""The gateway's analytics rules: ranges, totals, finality, event rows."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from codiv_common.events import MetricPoint
from codiv_gateway import analytics as an
from codiv_gateway.domain import Problem

TODAY = date(2026, 6, 30)


def test_default_range_is_the_last_30_days_or_from_publication() -> None:
    assert an.resolve_range(None, None, TODAY) == (TODAY - timedelta(days=29), TODAY)
    published = TODAY - timedelta(days=3)
    assert an.resolve_range(None, None, TODAY, earliest=published) == (published, TODAY)
    old = TODAY - timedelta(days=200)
    assert an.resolve_range(None, None, TODAY, earliest=old)[0] == TODAY - timedelta(days=29)
    start = TODAY + timedelta(days=3)
    assert an.resolve_range(start, None, TODAY) == (start, start)


def test_ninety_days_is_the_longest_range() -> None:
    start = TODAY - timedelta(days=89)
    assert an.resolve_range(start, TODAY, TODAY) == (start, TODAY)
    with pytest.raises(Problem) as err:
        an.resolve_range(start - timedelta(days=1), TODAY, TODAY)
    assert err.value.status == 422
    assert err.value.code == "range_too_long"
    assert "91 days" in (err.value.detail or "")
    assert f"from={start.isoformat()}" in (err.value.detail or "")


def test_reversed_range_is_a_field_error() -> None:
    with pytest.raises(Problem) as err:
        an.resolve_range(TODAY, TODAY - timedelta(days=1), TODAY)
    assert err.value.code == "validation_error"
    assert err.value.errors[0].field == "from"


def test_totals_sum_counts_and_weight_the_average_watch_time() -> None:
    days = [
        {"impressions": 10, "video_starts": 10, "video_avg_watch_time": 2.0},
        {"impressions": 5, "video_starts": 30, "video_avg_watch_time": 6.0},
    ]
    out = an.totals(days, an.VIDEO_METRICS)
    assert out["impressions"] == 15
    assert out["video_starts"] == 40
    assert out["video_avg_watch_time"] == 5.0
    assert an.totals([], an.IMAGE_METRICS) == dict.fromkeys(an.IMAGE_METRICS, 0.0)
    assert an.totals([], an.VIDEO_METRICS)["video_avg_watch_time"] == 0.0


def test_finality_stops_at_the_first_day_not_final() -> None:
    d = date(2026, 6, 1)
    rows = [(d, True), (d + timedelta(days=2), True), (d + timedelta(days=1), False)]
    assert an.finality(rows) == (d, [d + timedelta(days=1)])
    assert an.finality([]) == (None, [])
    assert an.finality([(d, False)]) == (None, [d])


def test_event_days_rename_metrics_and_drop_before_rows() -> None:
    rows = an.event_days(
        [
            MetricPoint(date="2026-06-01", data_status="BEFORE_PIN_CREATED", metrics={}),
            MetricPoint(
                date="2026-06-02",
                data_status="READY",
                metrics={"IMPRESSION": 3, "VIDEO_MRC_VIEW": 2, "SAVE_RATE": 0.1},
            ),
            MetricPoint(date="2026-06-03", data_status="PROCESSING", metrics={"SAVE": 1}),
        ],
        an.PIN_METRIC_NAMES,
    )
    assert rows == [
        (date(2026, 6, 2), "READY", True, {"impressions": 3.0, "video_views": 2.0}),
        (date(2026, 6, 3), "PROCESSING", False, {"saves": 1.0}),
    ]
