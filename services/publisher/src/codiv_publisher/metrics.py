"""The publisher's own Prometheus metrics (on the process' explicit registry)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class PublisherMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.published = Counter(
            "codiv_publisher_pins_published_total",
            "Posts published, by pin kind and how (created or adopted by reconciliation)",
            ["kind", "how"],
            registry=registry,
        )
        self.failed = Counter(
            "codiv_publisher_posts_failed_total",
            "Posts failed for good, by error code",
            ["code"],
            registry=registry,
        )
        self.retries = Counter(
            "codiv_publisher_retries_scheduled_total",
            "post.retry emitted, by reason (failure, pacing, media_poll)",
            ["reason"],
            registry=registry,
        )
        self.pinterest_errors = Counter(
            "codiv_publisher_pinterest_errors_total",
            "Pinterest calls that failed, by customer-facing code",
            ["code"],
            registry=registry,
        )
        self.reconciliations = Counter(
            "codiv_publisher_reconciliations_total",
            "Looks for a pin an unanswered create may have made, by result",
            ["result"],
            registry=registry,
        )
        self.pacing_wait = Histogram(
            "codiv_publisher_pacing_wait_seconds",
            "Time waited in the consumer for an account's write slot",
            buckets=(0.0, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10),
            registry=registry,
        )
        self.create_latency = Histogram(
            "codiv_publisher_create_pin_seconds",
            "Latency of POST /pins",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=registry,
        )
