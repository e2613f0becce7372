"""Pure rules of the metric collection plan: when to collect, which days, which metrics."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

# Pinterest serves organic analytics for the last 90 days; 89 keeps clear of the UTC
# off-by-one at the edge (NOTES.md section 5).
WINDOW_DAYS = 89

_HOUR = dt.timedelta(hours=1)
_DAY = dt.timedelta(days=1)

# Ages (since publication) at which a pin's analytics are collected: about an hour after
# publishing, at 24 hours, daily until 30 days, then weekly until Pinterest's 90 days
# (the last look on day 89 still reaches the day of publication).
SCHEDULE: tuple[dt.timedelta, ...] = (
    _HOUR,
    24 * _HOUR,
    *(d * _DAY for d in range(2, 31)),
    *(d * _DAY for d in range(37, WINDOW_DAYS, 7)),
    WINDOW_DAYS * _DAY,
)

PIN_METRICS: tuple[str, ...] = ("IMPRESSION", "SAVE", "PIN_CLICK", "OUTBOUND_CLICK")
VIDEO_METRICS: tuple[str, ...] = (
    *PIN_METRICS,
    "VIDEO_MRC_VIEW",
    "VIDEO_AVG_WATCH_TIME",
    "VIDEO_START",
    "QUARTILE_95_PERCENT_VIEW",
)
ACCOUNT_METRICS: tuple[str, ...] = (
    "IMPRESSION",
    "SAVE",
    "PIN_CLICK",
    "OUTBOUND_CLICK",
    "ENGAGEMENT",
)
ACCOUNT_INTERVAL = _DAY


def metric_types(post_type: str) -> tuple[str, ...]:
    """The metrics asked for a pin: video pins add views, watch time, starts, 95%."""
    return VIDEO_METRICS if post_type == "video" else PIN_METRICS


def first_collection(published_at: dt.datetime) -> dt.datetime:
    return published_at + SCHEDULE[0]


def next_collection(published_at: dt.datetime, now: dt.datetime) -> dt.datetime | None:
    """The first planned collection strictly after ``now``; None when the plan is over.

    Stages missed while the collector was down are skipped: one late collection
    fetches every day since the last final one anyway.
    """
    age = now - published_at
    for offset in SCHEDULE:
        if offset > age:
            return published_at + offset
    return None


def stage_of(published_at: dt.datetime, now: dt.datetime) -> int:
    """How many planned collections are due by ``now`` (for reports)."""
    age = now - published_at
    return sum(1 for offset in SCHEDULE if offset <= age)


@dataclass(frozen=True)
class DateRange:
    start: dt.date
    end: dt.date


def collection_range(
    published_on: dt.date | None, final_through: dt.date | None, today: dt.date
) -> DateRange | None:
    """Days to ask for: from the day after the last final one (or the publication day,
    or the start of the window) up to today, clamped to Pinterest's 90-day window.

    None when nothing inside the window is left to ask (the plan can end).
    """
    oldest = today - dt.timedelta(days=WINDOW_DAYS)
    start = oldest if published_on is None else max(published_on, oldest)
    if final_through is not None:
        start = max(start, final_through + _DAY)
    if start > today:
        return None
    return DateRange(start, today)


def is_final(data_status: str | None) -> bool:
    """READY days never change again; BEFORE_* days have nothing to wait for either."""
    return data_status == "READY" or (data_status or "").startswith("BEFORE_")


def settled_through(
    days: Iterable[tuple[dt.date, str | None]], previous: dt.date | None
) -> dt.date | None:
    """The last day such that it and every day before it (in the answer) are final."""
    result = previous
    for day, status in sorted(days, key=lambda d: d[0]):
        if not is_final(status):
            break
        result = day if result is None else max(result, day)
    return result


def reportable(data_status: str | None) -> bool:
    """Rows worth sending: BEFORE_* rows carry no figures."""
    return not (data_status or "").startswith("BEFORE_")


def failure_delay(failures: int, base: float = 60.0, cap: float = 6 * 3600.0) -> float:
    """Seconds before a failed collection is tried again (doubling, capped)."""
    return float(min(cap, base * 2 ** max(0, failures - 1)))
