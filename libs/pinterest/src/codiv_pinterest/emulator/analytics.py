"""Deterministic organic analytics: numbers depend only on the Pin id, its age and the date."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

__all__ = ["ACCOUNT_METRICS", "PIN_METRICS", "VIDEO_PIN_METRICS", "account_report", "pin_report"]

PIN_METRICS = frozenset(
    {
        "IMPRESSION",
        "OUTBOUND_CLICK",
        "PIN_CLICK",
        "SAVE",
        "SAVE_RATE",
        "TOTAL_COMMENTS",
        "TOTAL_REACTIONS",
        "USER_FOLLOW",
        "PROFILE_VISIT",
    }
)
VIDEO_PIN_METRICS = frozenset(
    {
        "IMPRESSION",
        "OUTBOUND_CLICK",
        "PIN_CLICK",
        "SAVE",
        "SAVE_RATE",
        "VIDEO_MRC_VIEW",
        "VIDEO_10S_VIEW",
        "QUARTILE_95_PERCENT_VIEW",
        "VIDEO_V50_WATCH_TIME",
        "VIDEO_START",
        "VIDEO_AVG_WATCH_TIME",
        "TOTAL_COMMENTS",
        "TOTAL_REACTIONS",
    }
)
ACCOUNT_METRICS = (
    "ENGAGEMENT",
    "ENGAGEMENT_RATE",
    "IMPRESSION",
    "OUTBOUND_CLICK",
    "OUTBOUND_CLICK_RATE",
    "PIN_CLICK",
    "PIN_CLICK_RATE",
    "SAVE",
    "SAVE_RATE",
)

# Typical daily counts of a young Pin; each Pin gets its own factor in [0.5, 1.5).
_BASE = {
    "IMPRESSION": 120.0,
    "PIN_CLICK": 9.0,
    "OUTBOUND_CLICK": 4.0,
    "SAVE": 3.0,
    "TOTAL_COMMENTS": 0.3,
    "TOTAL_REACTIONS": 1.2,
    "USER_FOLLOW": 0.2,
    "PROFILE_VISIT": 1.5,
    "VIDEO_MRC_VIEW": 40.0,
    "VIDEO_10S_VIEW": 15.0,
    "QUARTILE_95_PERCENT_VIEW": 6.0,
    "VIDEO_START": 55.0,
    "VIDEO_V50_WATCH_TIME": 9000.0,
}
# Days at the end of the range still being computed, as on Pinterest (24-48 h lag).
_PROCESSING_DAYS = 2


@lru_cache(maxsize=65536)
def _factor(pin_id: str, metric: str) -> float:
    digest = hashlib.sha256(f"{pin_id}:{metric}".encode()).digest()
    return 0.5 + int.from_bytes(digest[:4], "big") / 2**32


def _count(pin_id: str, metric: str, age_days: int) -> int:
    # Reach builds up while a Pin ages: the daily figure grows with its age in days.
    return int(_BASE[metric] * _factor(pin_id, metric) * (1 + age_days / 7))


def _pin_day(pin_id: str, age_days: int, metrics: Iterable[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for metric in metrics:
        if metric == "SAVE_RATE":
            imp = _count(pin_id, "IMPRESSION", age_days)
            out[metric] = round(_count(pin_id, "SAVE", age_days) / imp, 4) if imp else 0.0
        elif metric == "VIDEO_AVG_WATCH_TIME":
            starts = _count(pin_id, "VIDEO_START", age_days)
            total = _count(pin_id, "VIDEO_V50_WATCH_TIME", age_days)
            out[metric] = round(total / starts, 2) if starts else 0.0
        else:
            out[metric] = float(_count(pin_id, metric, age_days))
    return out


def _dates(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def _status(day: dt.date, today: dt.date) -> str:
    return "PROCESSING" if (today - day).days < _PROCESSING_DAYS else "READY"


def _summary(rows: Sequence[dict[str, float]], metrics: Sequence[str]) -> dict[str, float]:
    totals: dict[str, float] = {}
    for metric in metrics:
        totals[metric] = float(sum(r.get(metric, 0.0) for r in rows))

    def rate(num: str, den: str) -> float:
        n = sum(r.get(num, 0.0) for r in rows)
        d = sum(r.get(den, 0.0) for r in rows)
        return round(n / d, 4) if d else 0.0

    for metric in metrics:
        if metric == "SAVE_RATE":
            totals[metric] = rate("_SAVE", "_IMPRESSION")
        elif metric.endswith("_RATE"):
            totals[metric] = rate("_" + metric.removesuffix("_RATE"), "_IMPRESSION")
        elif metric == "VIDEO_AVG_WATCH_TIME":
            totals[metric] = rate("_VIDEO_V50_WATCH_TIME", "_VIDEO_START")
    return totals


def pin_report(
    pin_id: str,
    created: dt.date,
    start: dt.date,
    end: dt.date,
    today: dt.date,
    metrics: Sequence[str],
) -> dict[str, Any]:
    helpers = ("IMPRESSION", "SAVE", "VIDEO_V50_WATCH_TIME", "VIDEO_START")
    daily: list[dict[str, Any]] = []
    rows: list[dict[str, float]] = []
    for day in _dates(start, end):
        age = (day - created).days
        if age < 0:
            daily.append(
                {"date": day.isoformat(), "data_status": "BEFORE_PIN_CREATED", "metrics": {}}
            )
            continue
        values = _pin_day(pin_id, age, metrics)
        daily.append(
            {"date": day.isoformat(), "data_status": _status(day, today), "metrics": values}
        )
        hidden = {f"_{h}": float(_count(pin_id, h, age)) for h in helpers}
        rows.append(values | hidden)
    age_now = max(0, (today - created).days)
    lifetime = {
        "TOTAL_COMMENTS": sum(_count(pin_id, "TOTAL_COMMENTS", a) for a in range(age_now + 1)),
        "TOTAL_REACTIONS": sum(_count(pin_id, "TOTAL_REACTIONS", a) for a in range(age_now + 1)),
    }
    return {
        "daily_metrics": daily,
        "summary_metrics": _summary(rows, metrics),
        "lifetime_metrics": lifetime,
    }


def account_report(
    pins: Sequence[tuple[str, dt.date]],
    start: dt.date,
    end: dt.date,
    today: dt.date,
    metrics: Sequence[str],
) -> dict[str, Any]:
    daily: list[dict[str, Any]] = []
    rows: list[dict[str, float]] = []
    for day in _dates(start, end):
        raw = {"IMPRESSION": 0.0, "PIN_CLICK": 0.0, "OUTBOUND_CLICK": 0.0, "SAVE": 0.0}
        for pin_id, created in pins:
            age = (day - created).days
            if age >= 0:
                for metric in raw:
                    raw[metric] += _count(pin_id, metric, age)
        raw["ENGAGEMENT"] = raw["PIN_CLICK"] + raw["OUTBOUND_CLICK"] + raw["SAVE"]
        imp = raw["IMPRESSION"]
        values: dict[str, float] = {}
        for metric in metrics:
            if metric.endswith("_RATE"):
                base = raw[metric.removesuffix("_RATE")]
                values[metric] = round(base / imp, 4) if imp else 0.0
            else:
                values[metric] = raw[metric]
        daily.append(
            {"date": day.isoformat(), "data_status": _status(day, today), "metrics": values}
        )
        rows.append(values | {f"_{k}": v for k, v in raw.items()})
    return {"daily_metrics": daily, "summary_metrics": _summary(rows, metrics)}
