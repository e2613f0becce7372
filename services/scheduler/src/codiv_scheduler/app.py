"""Composition root of the scheduler service."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from codiv_common.broker import QueueSpec
from codiv_common.http import create_base_app
from codiv_common.metrics import Metrics
from codiv_common.runtime import Runtime, ServiceSpec

from .consumers import EventConsumer
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


def create_app(settings: Settings) -> web.Application:
    """Build the scheduler application; nothing connects until the app starts."""
    metrics = Metrics("scheduler")
    runtime = Runtime(settings, SPEC, metrics)
    runtime.set_handler(EventConsumer(runtime, SCHEMA).handle)
    return create_base_app(runtime)
