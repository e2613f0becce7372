"""The publisher's metric collection plan: schedule, date ranges, finality."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from codiv_publisher import metrics_plan as plan

T0 = dt.datetime(2026, 3, 1, 10, 30, tzinfo=dt.UTC)
H = dt.timedelta(hours=1)
D = dt.timedelta(days=1)


def Day(month: int, day: int) -> dt.date:
    return dt.date(2026, month, day)


def test_schedule_hour_day_daily_then_weekly_until_window() -> None:
    offsets = list(plan.SCHEDULE)
    assert offsets[:3] == [H, 24 * H, 2 * D]
    daily = [o for o in offsets if D < o <= 30 * D]
    assert daily == [d * D for d in range(2, 31)]
    weekly = [o for o in offsets if o > 30 * D]
    assert weekly[0] == 37 * D
    assert all(b - a == 7 * D for a, b in itertools.pairwise(weekly[:-1]))
    assert weekly[-1] == 89 * D  # the last look still reaches the publication day
    assert offsets == sorted(offsets)
    assert len(offsets) == 2 + 29 + 8 + 1


def test_next_collection_walks_the_plan_and_ends() -> None:
    assert plan.first_collection(T0) == T0 + H
    assert plan.next_collection(T0, T0) == T0 + H
    assert plan.next_collection(T0, T0 + H) == T0 + 24 * H
    assert plan.next_collection(T0, T0 + 24 * H + dt.timedelta(minutes=5)) == T0 + 2 * D
    assert plan.next_collection(T0, T0 + 30 * D) == T0 + 37 * D
    assert plan.next_collection(T0, T0 + 86 * D) == T0 + 89 * D
    assert plan.next_collection(T0, T0 + 89 * D) is None


def test_missed_stages_are_skipped_not_replayed() -> None:
    # The collector was down for ten days: one collection, then the next planned one.
    assert plan.next_collection(T0, T0 + 12 * D + H) == T0 + 13 * D
    assert plan.stage_of(T0, T0 + 12 * D + H) == 13


def test_metric_types_by_post_type() -> None:
    assert plan.metric_types("image") == ("IMPRESSION", "SAVE", "PIN_CLICK", "OUTBOUND_CLICK")
    assert plan.metric_types("carousel") == plan.metric_types("image")
    video = plan.metric_types("video")
    for metric in (
        "VIDEO_MRC_VIEW",
        "VIDEO_AVG_WATCH_TIME",
        "VIDEO_START",
        "QUARTILE_95_PERCENT_VIEW",
        "IMPRESSION",
    ):
        assert metric in video


@pytest.mark.parametrize(
    ("published", "final", "today", "expected"),
    [
        # first look: the publication day only
        (Day(3, 1), None, Day(3, 1), (Day(3, 1), Day(3, 1))),
        # later: from the day after the last final day
        (Day(3, 1), Day(3, 5), Day(3, 8), (Day(3, 6), Day(3, 8))),
        # clamp: never more than 89 days back from today
        (Day(1, 1), None, Day(5, 1), (Day(2, 1), Day(5, 1))),
        # account (no publication day): the whole window
        (None, None, Day(5, 1), (Day(2, 1), Day(5, 1))),
    ],
)  # fmt: skip
def test_collection_range(
    published: dt.date | None,
    final: dt.date | None,
    today: dt.date,
    expected: tuple[dt.date, dt.date],
) -> None:
    span = plan.collection_range(published, final, today)
    assert span is not None
    assert (span.start, span.end) == expected
    assert (span.end - span.start).days <= plan.WINDOW_DAYS


def test_collection_range_empty_when_everything_is_final() -> None:
    assert (
        plan.collection_range(dt.date(2026, 3, 1), dt.date(2026, 3, 8), dt.date(2026, 3, 8)) is None
    )


def test_finality_and_settled_through() -> None:
    assert plan.is_final("READY")
    assert plan.is_final("BEFORE_PIN_CREATED")
    assert not plan.is_final("PROCESSING")
    assert not plan.is_final("ESTIMATE")
    assert not plan.is_final(None)
    d = dt.date(2026, 3, 1)
    days = [(d + 2 * D, "PROCESSING"), (d, "READY"), (d + D, "READY"), (d + 3 * D, "READY")]
    # A READY day after a PROCESSING one does not count: the gap must be asked again.
    assert plan.settled_through(days, None) == d + D
    assert plan.settled_through([(d, "PROCESSING")], d - D) == d - D
    assert plan.settled_through([], None) is None
    assert not plan.reportable("BEFORE_PIN_CREATED")
    assert plan.reportable("PROCESSING")


def test_failure_delay_doubles_and_caps() -> None:
    assert plan.failure_delay(1) == 60
    assert plan.failure_delay(2) == 120
    assert plan.failure_delay(30) == 6 * 3600
