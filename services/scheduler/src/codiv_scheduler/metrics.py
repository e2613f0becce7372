"""The scheduler's own Prometheus metrics, on the process' explicit registry."""

from __future__ import annotations

from codiv_common.metrics import Metrics
from prometheus_client import Counter, Gauge, Histogram

_LAG_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 15.0, 60.0, 300.0, 3600.0
)  # fmt: skip
_BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


class SchedulerMetrics:
    """Pending jobs, releases, release lag and batch sizes, changes by outcome."""

    def __init__(self, metrics: Metrics) -> None:
        r = metrics.registry
        self.pending = Gauge(
            "codiv_scheduler_pending_jobs",
            "Jobs waiting for their due time (sampled)",
            registry=r,
        )
        self.released = Counter(
            "codiv_scheduler_released_total", "Jobs released (post.due written)", registry=r
        )
        self.lag = Histogram(
            "codiv_scheduler_release_lag_seconds",
            "Release instant (batch committed) minus due time",
            buckets=_LAG_BUCKETS,
            registry=r,
        )
        self.batch = Histogram(
            "codiv_scheduler_release_batch_size",
            "Jobs released per batch",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.batch_seconds = Histogram(
            "codiv_scheduler_release_batch_seconds",
            "Time to claim a batch and commit it with its outbox rows",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=r,
        )
        self.changes = Counter(
            "codiv_scheduler_changes_total",
            "Consumed commands by type and outcome (scheduled, rescheduled, rejected_...)",
            ["type", "outcome"],
            registry=r,
        )
