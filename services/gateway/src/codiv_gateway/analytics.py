"""Analytics read model and API: figures from pin.metrics / account.metrics, per day."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal

import asyncpg
from aiohttp import web
from codiv_common.db import Conn
from codiv_common.events import AccountMetricsEvent, Event, MetricPoint, PinMetricsEvent
from codiv_common.logging import get_logger
from pydantic import BaseModel, ConfigDict, Field

from . import domain
from .adapters.analytics_repo import AnalyticsStore, DayRow, aggregate_columns
from .adapters.postgres import Store
from .domain import FieldError, Problem

log = get_logger(__name__)

METRICS_EVENTS = ("pin.metrics", "account.metrics")
# Pinterest keeps 90 days of organic analytics; one answer covers at most that.
MAX_RANGE_DAYS = 90
DEFAULT_RANGE_DAYS = 30

# Pinterest's metric names -> ours.
PIN_METRIC_NAMES = {
    "IMPRESSION": "impressions",
    "SAVE": "saves",
    "PIN_CLICK": "pin_clicks",
    "OUTBOUND_CLICK": "outbound_clicks",
    "VIDEO_MRC_VIEW": "video_views",
    "VIDEO_AVG_WATCH_TIME": "video_avg_watch_time",
    "VIDEO_START": "video_starts",
    "QUARTILE_95_PERCENT_VIEW": "video_completions_95",
}
ACCOUNT_METRIC_NAMES = {
    "IMPRESSION": "impressions",
    "SAVE": "saves",
    "PIN_CLICK": "pin_clicks",
    "OUTBOUND_CLICK": "outbound_clicks",
    "ENGAGEMENT": "engagements",
}
IMAGE_METRICS = ("impressions", "saves", "pin_clicks", "outbound_clicks")
VIDEO_METRICS = (*IMAGE_METRICS, "video_views", "video_avg_watch_time", "video_starts",
                 "video_completions_95")  # fmt: skip
ACCOUNT_METRICS = (*IMAGE_METRICS, "engagements")
# video_avg_watch_time is an average: totals weight each day by its video starts.
AVERAGE, WEIGHT = "video_avg_watch_time", "video_starts"
COUNT_METRICS = tuple(m for m in VIDEO_METRICS if m != AVERAGE)
SortMetric = Literal[
    "impressions",
    "saves",
    "pin_clicks",
    "outbound_clicks",
    "video_views",
    "video_starts",
    "video_completions_95",
]


# ================================================================ pure rules


def is_final(data_status: str | None) -> bool:
    """Only READY days are final (BEFORE_* days carry nothing that could change)."""
    return data_status == "READY" or (data_status or "").startswith("BEFORE_")


def rename(metrics: dict[str, float], names: dict[str, str]) -> dict[str, float]:
    return {names[k]: float(v) for k, v in metrics.items() if k in names}


def event_days(points: Iterable[MetricPoint], names: dict[str, str]) -> list[DayRow]:
    """The rows to store from an event's daily points (our names, finality)."""
    rows: list[DayRow] = []
    for p in points:
        if not (p.data_status or "").startswith("BEFORE_"):
            day = date.fromisoformat(p.date)
            rows.append((day, p.data_status, is_final(p.data_status), rename(p.metrics, names)))
    return rows


def resolve_range(
    start: date | None, end: date | None, today: date, *, earliest: date | None = None
) -> tuple[date, date]:
    """The asked range, with defaults: ``to`` = today, ``from`` = the last 30 days (or
    ``earliest``, e.g. the publication day, when later). At most 90 days, never reversed."""
    end = end or (max(today, start) if start else today)
    if start is None:
        start = end - timedelta(days=DEFAULT_RANGE_DAYS - 1)
        if earliest is not None:
            start = max(start, min(earliest, end))
    if start > end:
        raise domain.validation_problem(
            [FieldError("from", f"must be on or before to ({end.isoformat()})")],
            f"The range is reversed: from {start.isoformat()} is after to {end.isoformat()}.",
        )
    days = (end - start).days + 1
    if days > MAX_RANGE_DAYS:
        raise Problem(
            422,
            "range_too_long",
            "The range is longer than 90 days",
            f"from {start.isoformat()} to {end.isoformat()} covers {days} days. Pinterest keeps "
            f"90 days of analytics, so one answer covers at most {MAX_RANGE_DAYS} days: for "
            f"example from={(end - timedelta(days=MAX_RANGE_DAYS - 1)).isoformat()}"
            f"&to={end.isoformat()}.",
            [FieldError("from", f"must be at most {MAX_RANGE_DAYS - 1} days before to")],
            max_days=MAX_RANGE_DAYS,
        )
    return start, end


def totals(days: Sequence[dict[str, float]], names: Sequence[str]) -> dict[str, float]:
    """Sums of the counts; the average watch time weighted by each day's video starts."""
    out = {m: 0.0 for m in names}
    num = den = 0.0
    for metrics in days:
        for m in names:
            if m != AVERAGE:
                out[m] += metrics.get(m, 0.0)
        if AVERAGE in metrics:
            weight = metrics.get(WEIGHT, 0.0)
            num += metrics[AVERAGE] * weight
            den += weight
    if AVERAGE in out:
        out[AVERAGE] = round(num / den, 2) if den else 0.0
    return out


def finality(rows: Sequence[tuple[date, bool]]) -> tuple[date | None, list[date]]:
    """(the last day up to which every stored day is final, the days not final yet)."""
    final_through: date | None = None
    pending: list[date] = []
    for day, final in sorted(rows):
        if not final:
            pending.append(day)
        elif not pending:
            final_through = day
    return final_through, pending


# ================================================================ models


class _Query(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# Far-off dates are refused up front (date arithmetic near year 1 or 9999 overflows).
Day = Annotated[date, Field(ge=date(2000, 1, 1), le=date(2100, 12, 31))]


class PostAnalyticsQuery(_Query):
    """Range of a post's analytics (UTC days)."""

    from_: Day | None = Field(
        default=None,
        alias="from",
        description="First day (YYYY-MM-DD); default: the publication day, at most 30 days back",
    )
    to: Day | None = Field(default=None, description="Last day; default: today (UTC)")


class AccountAnalyticsQuery(_Query):
    """Range of a profile's account analytics (UTC days)."""

    from_: Day | None = Field(
        default=None, alias="from", description="First day; default: 30 days before to"
    )
    to: Day | None = Field(default=None, description="Last day; default: today (UTC)")


class AnalyticsQuery(_Query):
    """Workspace analytics: totals, groups and top posts over a range."""

    profile_name: str | None = Field(default=None, max_length=64)
    from_: Day | None = Field(
        default=None, alias="from", description="First day; default: 30 days before to"
    )
    to: Day | None = Field(default=None, description="Last day; default: today (UTC)")
    group_by: Literal["day", "board", "post"] = "day"
    metric: SortMetric = Field(
        default="impressions", description="Orders top_posts (and groups when group_by=post)"
    )
    limit: int = Field(default=10, ge=1, le=100, description="Top posts (and post groups)")


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MetricDay(_Out):
    date: date
    data_status: str | None
    final: bool = Field(description="Pinterest marked the day READY: it will not change")
    metrics: dict[str, float]


class PostAnalytics(_Out):
    object: Literal["post_analytics"] = "post_analytics"
    post_id: str
    pin_id: str | None
    post_type: str
    status: str
    from_: date = Field(alias="from")
    to: date
    metrics: list[str]
    totals: dict[str, float]
    daily: list[MetricDay]
    final_through: date | None = Field(description="Every stored day up to here is final")
    latest_final: bool = Field(description="The latest stored day is final")
    pending_days: list[date] = Field(description="Days Pinterest may still change")
    collected_at: datetime | None
    note: str | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class AccountAnalytics(_Out):
    object: Literal["account_analytics"] = "account_analytics"
    profile_name: str
    username: str | None
    from_: date = Field(alias="from")
    to: date
    metrics: list[str]
    totals: dict[str, float]
    daily: list[MetricDay]
    final_through: date | None
    latest_final: bool
    pending_days: list[date]
    collected_at: datetime | None
    note: str | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class AnalyticsGroup(_Out):
    key: str = Field(description="The day, board id or post id")
    label: str | None = Field(description="Board name or post title")
    posts: int
    metrics: dict[str, float]


class TopPost(_Out):
    post_id: str
    pin_id: str | None
    title: str | None
    profile_name: str | None
    board_name: str | None
    metrics: dict[str, float]


class WorkspaceAnalytics(_Out):
    object: Literal["analytics"] = "analytics"
    profile_name: str | None
    from_: date = Field(alias="from")
    to: date
    group_by: str
    metric: str
    posts: int = Field(description="Posts with figures in the range")
    totals: dict[str, float]
    groups: list[AnalyticsGroup]
    top_posts: list[TopPost]
    note: str | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# ================================================================ events


async def apply_metrics_event(conn: Conn, event: Event) -> None:
    """pin.metrics / account.metrics into the read model (inside the inbox transaction).

    Out-of-order and duplicate safe: a day is only replaced while not final and by
    figures collected later. A post of another workspace is ignored.
    """
    if isinstance(event, PinMetricsEvent):
        p = event.payload
        if await Store.post(conn, event.workspace_id, p.post_id) is None:
            log.info("metrics_for_unknown_post", post_id=str(p.post_id))
            return
        await AnalyticsStore.upsert_post_days(
            conn, p.post_id, event.workspace_id, event_days(p.daily, PIN_METRIC_NAMES),
            p.collected_at,
        )  # fmt: skip
    elif isinstance(event, AccountMetricsEvent):
        a = event.payload
        await AnalyticsStore.upsert_account_days(
            conn, event.workspace_id, a.account_id, event_days(a.daily, ACCOUNT_METRIC_NAMES),
            a.collected_at,
        )  # fmt: skip


# ================================================================ use cases


def _today() -> date:
    return datetime.now(UTC).date()


def _series(rows: Sequence[asyncpg.Record], names: Sequence[str]) -> dict[str, Any]:
    daily = [
        MetricDay(
            date=r["day"],
            data_status=r["data_status"],
            final=r["final"],
            metrics={m: float(r["metrics"].get(m, 0.0)) for m in names if m in r["metrics"]},
        )
        for r in rows
    ]
    final_through, pending = finality([(r["day"], r["final"]) for r in rows])
    return {
        "daily": daily,
        "totals": totals([d.metrics for d in daily], names),
        "final_through": final_through,
        "latest_final": bool(rows) and bool(rows[-1]["final"]),
        "pending_days": pending,
        "collected_at": max((r["collected_at"] for r in rows), default=None),
    }


class AnalyticsService:
    """Read side of the analytics API. ``pool`` is called per use (NotReady until up)."""

    def __init__(
        self, pool: Callable[[], asyncpg.Pool], today: Callable[[], date] = _today
    ) -> None:
        self._pool = pool
        self._today = today

    async def post_analytics(
        self, workspace_id: uuid.UUID, post_id: str, query: PostAnalyticsQuery
    ) -> dict[str, Any]:
        try:
            pid = uuid.UUID(post_id)
        except ValueError:
            raise domain.not_found("post", post_id) from None
        async with self._pool().acquire() as conn:
            post = await Store.post(conn, workspace_id, pid)
            if post is None:
                raise domain.not_found("post", post_id)
            published = post["published_at"].date() if post["published_at"] else None
            start, end = resolve_range(query.from_, query.to, self._today(), earliest=published)
            rows = await AnalyticsStore.post_days(conn, pid, start, end)
        names = VIDEO_METRICS if post["post_type"] == "video" else IMAGE_METRICS
        series = _series(rows, names)
        note = None
        if post["status"] != "published":
            note = (
                "The post is not published yet: analytics are collected from about an hour "
                "after publishing, then daily for 30 days and weekly until 90 days."
            )
        elif not rows:
            note = (
                f"No figures between {start} and {end} yet. The first collection runs about "
                "an hour after publishing; Pinterest finalises each day within 1-2 days."
            )
        elif series["pending_days"]:
            note = "Days not final yet may still change; they are replaced when collected again."
        return PostAnalytics(
            post_id=str(pid),
            pin_id=post["pin_id"],
            post_type=post["post_type"],
            status=post["status"],
            from_=start,
            to=end,
            metrics=list(names),
            note=note,
            **series,
        ).model_dump(mode="json", by_alias=True)

    async def account_analytics(
        self, workspace_id: uuid.UUID, profile_name: str, query: AccountAnalyticsQuery
    ) -> dict[str, Any]:
        start, end = resolve_range(query.from_, query.to, self._today())
        async with self._pool().acquire() as conn:
            profile = await AnalyticsStore.profile_account(conn, workspace_id, profile_name)
            if profile is None:
                raise domain.not_found("profile", profile_name)
            rows = []
            if profile["account_id"] is not None:
                rows = await AnalyticsStore.account_days(
                    conn, workspace_id, profile["account_id"], start, end
                )
        note = None
        if profile["account_id"] is None:
            note = "No Pinterest account is connected to this profile."
        elif not rows:
            note = f"No account figures between {start} and {end} yet (collected daily)."
        return AccountAnalytics(
            profile_name=profile["name"],
            username=profile["username"],
            from_=start,
            to=end,
            metrics=list(ACCOUNT_METRICS),
            note=note,
            **_series(rows, ACCOUNT_METRICS),
        ).model_dump(mode="json", by_alias=True)

    async def workspace_analytics(
        self, workspace_id: uuid.UUID, query: AnalyticsQuery
    ) -> dict[str, Any]:
        start, end = resolve_range(query.from_, query.to, self._today())
        columns = aggregate_columns(COUNT_METRICS, AVERAGE, WEIGHT)
        pool = self._pool()
        name = query.profile_name
        if name is not None and await Store.profile(pool, workspace_id, name) is None:
            raise domain.not_found("profile", name)
        args = (pool, workspace_id, query.profile_name, start, end)
        total_rows = await AnalyticsStore.grouped(*args, group_by="total", columns=columns)
        order = f"{query.metric} DESC, key"
        top = await AnalyticsStore.grouped(
            *args, group_by="post", columns=columns, order_by=order, limit=query.limit
        )
        if query.group_by == "post":
            groups = top
        else:
            groups = await AnalyticsStore.grouped(
                *args, group_by=query.group_by, columns=columns, order_by="key"
            )
        total = total_rows[0] if total_rows else None
        posts = int(total["posts"]) if total else 0
        return WorkspaceAnalytics(
            profile_name=query.profile_name,
            from_=start,
            to=end,
            group_by=query.group_by,
            metric=query.metric,
            posts=posts,
            totals=_sums(total) if total else {m: 0.0 for m in VIDEO_METRICS},
            groups=[
                AnalyticsGroup(
                    key=str(g["key"]), label=g["label"], posts=int(g["posts"]), metrics=_sums(g)
                )
                for g in groups
            ],
            top_posts=[
                TopPost(
                    post_id=str(t["key"]),
                    pin_id=t["pin_id"],
                    title=t["label"],
                    profile_name=t["profile_name"],
                    board_name=t["board_name"],
                    metrics=_sums(t),
                )
                for t in top
            ],
            note=None if posts else f"No post figures between {start} and {end}.",
        ).model_dump(mode="json", by_alias=True)


def _sums(row: asyncpg.Record) -> dict[str, float]:
    out = {m: float(row[m] or 0.0) for m in COUNT_METRICS}
    den = row[f"_{AVERAGE}_den"]
    out[AVERAGE] = round(float(row[f"_{AVERAGE}_num"]) / float(den), 2) if den else 0.0
    return out


ANALYTICS_KEY = web.AppKey("analytics_service", AnalyticsService)
