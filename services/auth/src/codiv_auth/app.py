"""Composition root of the auth service."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from codiv_common.http import create_base_app
from codiv_common.metrics import Metrics
from codiv_common.runtime import Runtime, ServiceSpec

from .settings import Settings

SCHEMA = "auth"
SPEC = ServiceSpec(name="auth", schema=SCHEMA, migrations=Path(__file__).parent / "migrations")


def create_app(settings: Settings) -> web.Application:
    """Build the auth application; nothing connects until the app starts."""
    metrics = Metrics("auth")
    runtime = Runtime(settings, SPEC, metrics)
    return create_base_app(runtime)
