"""Prometheus metrics with an explicit registry per process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The metrics one process exports; services add their own through :attr:`registry`."""

    def __init__(self, service: str, registry: CollectorRegistry | None = None) -> None:
        self.service = service
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http_requests = Counter(
            "codiv_http_requests_total",
            "HTTP requests handled",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_latency = Histogram(
            "codiv_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.messages_consumed = Counter(
            "codiv_messages_consumed_total",
            "Broker messages handled, by outcome (ack, duplicate, retry, dead)",
            ["queue", "type", "outcome"],
            registry=r,
        )
        self.message_latency = Histogram(
            "codiv_message_handle_seconds",
            "Time to handle one broker message",
            ["queue", "type"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.messages_published = Counter(
            "codiv_messages_published_total",
            "Events published to the broker (confirmed)",
            ["type"],
            registry=r,
        )
        self.outbox_pending = Gauge(
            "codiv_outbox_pending",
            "Outbox rows not yet published (sampled by the relay)",
            registry=r,
        )
        self.outbox_batch = Histogram(
            "codiv_outbox_batch_size",
            "Rows published per outbox relay batch",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
            registry=r,
        )
        self.ready = Gauge("codiv_ready", "1 when the service is ready", registry=r)

    def render(self) -> bytes:
        """The registry in Prometheus' text exposition format."""
        return generate_latest(self.registry)
