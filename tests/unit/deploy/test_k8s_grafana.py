"""The Grafana dashboard charts every metric the services export, and only real ones."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
DASHBOARD = ROOT / "deploy" / "grafana" / "codiv.json"
DEFINITION = re.compile(r"\b(Counter|Gauge|Histogram|Summary)\(\s*\"([a-zA-Z_:][\w:]*)\"")
# RabbitMQ's own series (Prometheus plugin, family queue_coarse_metrics) used for depths.
RABBITMQ = {
    "rabbitmq_detailed_queue_messages_ready",
    "rabbitmq_detailed_queue_messages_unacked",
    "rabbitmq_detailed_queue_messages",
}
PROMQL_WORDS = {
    "sum",
    "max",
    "min",
    "avg",
    "by",
    "rate",
    "histogram_quantile",
    "le",
    "count",
    "without",
    "increase",
}


@functools.cache
def defined_metrics() -> dict[str, str]:
    """Exported series name -> kind, from every Counter/Gauge/Histogram in our sources."""
    out: dict[str, str] = {}
    for pattern in ("libs/*/src/**/*.py", "services/*/src/**/*.py"):
        for path in ROOT.glob(pattern):
            for kind, name in DEFINITION.findall(path.read_text()):
                if kind == "Counter" and not name.endswith("_total"):
                    name += "_total"  # prometheus_client exports counters with _total
                out[name] = kind
    return out


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in panels(dashboard) for t in p.get("targets", [])]


def referenced(expr: str) -> set[str]:
    # Drop label matchers and legend templates, keep identifiers that look like series.
    bare = re.sub(r"\{[^}]*\}", "", expr)
    bare = re.sub(r"\b(by|without)\s*\([^)]*\)", "", bare)
    bare = re.sub(r"\[[^\]]*\]", "", bare)
    names = set(re.findall(r"\b([a-zA-Z_:][\w:]*)\b", bare))
    return {n for n in names if n not in PROMQL_WORDS and not n.replace(".", "").isdigit()}


def series_base(name: str, kinds: dict[str, str]) -> str:
    for suffix in ("_bucket", "_sum", "_count"):
        stem = name.removesuffix(suffix)
        if stem != name and kinds.get(stem) in {"Histogram", "Summary"}:
            return stem
    return name


def test_dashboard_is_valid_grafana_json() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"]
    assert dashboard["title"]
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "namespace"} <= variables
    for panel in panels(dashboard):
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]


def test_every_charted_metric_exists() -> None:
    kinds = defined_metrics()
    for expr in expressions():
        for name in referenced(expr):
            base = series_base(name, kinds)
            assert base in kinds or name in RABBITMQ, f"{name} (in {expr}) is exported by nothing"
            if kinds.get(base) in {"Histogram", "Summary"}:
                assert name != base, f"{name}: a histogram is charted through _bucket/_sum/_count"


def test_every_exported_metric_is_charted() -> None:
    """A metric a service adds later fails here until a panel shows it (deploy/grafana)."""
    charted = {series_base(n, defined_metrics()) for e in expressions() for n in referenced(e)}
    missing = sorted(set(defined_metrics()) - charted)
    assert not missing, f"add panels to {DASHBOARD.relative_to(ROOT)} for: {missing}"


def test_issue_topics_are_on_the_dashboard() -> None:
    text = " ".join(expressions())
    for must in (
        "codiv_http_requests_total",  # request rate
        "codiv_http_request_duration_seconds_bucket",  # latency
        "rabbitmq_detailed_queue_messages_ready",  # queue depths
        "codiv_scheduler_release_lag_seconds_bucket",  # release lag
        "codiv_publisher_pins_published_total",  # publish outcomes
        'status="429"',  # 429s we answer
        "pinterest_rate_limited",  # 429s Pinterest answers
        'codiv_auth_token_refreshes_total{namespace="$namespace", outcome!="ok"}',
    ):
        assert must in text, must
