"""Composition root of the scheduler service."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from codiv_common.broker import QueueSpec
from codiv_common.http import create_base_app
from codiv_common.metrics import Metrics
from codiv_common.runtime import Runtime, ServiceSpec

from .consumers import EventConsumer
from .metrics import SchedulerMetrics
from .service import PendingSampler, ReleaseLoop, ReleaseSettings, SchedulerService
from .settings import Settings

SCHEMA = "scheduler"
SPEC = ServiceSpec(
    name="scheduler",
    schema=SCHEMA,
    migrations=Path(__file__).parent / "migrations",
    queue=QueueSpec(
        name="scheduler",
        routing_keys=(
            "post.requested",
            "post.cancelled",
            "post.rescheduled",
            "post.retry",
        ),
    ),
)


def create_runtime(settings: Settings) -> Runtime:
    """Wire the scheduler onto a :class:`Runtime`: consumer, release loop, pending sampler."""
    metrics = Metrics("scheduler")
    runtime = Runtime(settings, SPEC, metrics)
    own = SchedulerMetrics(metrics)

    service = SchedulerService(lambda: runtime.pool, SCHEMA, own)
    runtime.set_handler(EventConsumer(service).handle)

    def wake_relay() -> None:
        if runtime.relay is not None:
            runtime.relay.wake()

    loop = ReleaseLoop(
        pool=lambda: runtime.pool,
        dsn=runtime.dsn,
        schema=SCHEMA,
        metrics=own,
        settings=ReleaseSettings(
            batch_size=settings.scheduler_batch_size,
            max_sleep=settings.scheduler_max_sleep,
            contention_backoff_max=settings.scheduler_contention_backoff_max,
            replica_id=settings.scheduler_replica_id,
            fault_hold_batch=settings.scheduler_fault_hold_batch,
        ),
        wake_relay=wake_relay,
    )
    sampler = PendingSampler(
        lambda: runtime.pool,
        SCHEMA,
        own,
        settings.scheduler_pending_sample_interval,
        settings.scheduler_job_retention_days,
    )

    async def start_loops(rt: Runtime) -> None:
        rt.spawn(loop.run(), "release-loop")
        rt.spawn(sampler.run(), "pending-sampler")

    runtime.on_ready(start_loops)
    runtime.on_stop(loop.stop)
    return runtime


def create_app(settings: Settings) -> web.Application:
    """Build the scheduler application; nothing connects until the app starts."""
    return create_base_app(create_runtime(settings))
