"""Percentiles, median-and-spread summaries and the printed table."""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any


def pct(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (nearest rank on the sorted values); NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def spread(values: Sequence[float], digits: int = 1) -> dict[str, Any]:
    """Median, min and max of repeated measurements (the figure and its spread)."""
    if not values:
        return {"median": None, "min": None, "max": None, "runs": []}
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "runs": [round(v, digits) for v in values],
    }


def fmt_spread(s: dict[str, Any], unit: str = "") -> str:
    if s["median"] is None:
        return "-"
    if len(s["runs"]) == 1:
        return f"{s['median']}{unit}"
    return f"{s['median']}{unit} ({s['min']}..{s['max']})"


def machine() -> dict[str, Any]:
    """What the figures were taken on."""
    load = os.getloadavg()
    return {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "system": platform.system(),
        "load_avg_at_start": [round(x, 2) for x in load],
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def print_table(title: str, rows: list[tuple[str, str, str, str]]) -> None:
    """Rows of (measure, figure, target, met) as an aligned text table."""
    head = ("measure", "figure", "target", "met")
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(4)]
    print(f"\n{title}")
    print(" | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
    print("-+-".join("-" * w for w in widths))
    for row in rows:
        print(" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    print(flush=True)
