"""Composition root of the gateway service."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web
from codiv_common.broker import INGEST_SUFFIX, QueueSpec
from codiv_common.http import create_base_app
from codiv_common.logging import get_logger
from codiv_common.metrics import Metrics
from codiv_common.runtime import Runtime, ServiceSpec

from .adapters.media import MediaProbe
from .analytics import ANALYTICS_KEY, AnalyticsService
from .consumers import EventConsumer, IngestConsumer
from .handlers import SERVICE_KEY, add_routes, api_middleware
from .service import GatewayService
from .settings import Settings
from .webhook_api import install_webhooks

log = get_logger(__name__)

SCHEMA = "gateway"
CONSUMED = (
    "post.due",
    "post.retry",
    "post.publishing",
    "post.published",
    "post.failed",
    "post.change_rejected",
    "post.paused",
    "post.resumed",
    "account.*",
    "pin.metrics",
)
SPEC = ServiceSpec(
    name="gateway",
    schema=SCHEMA,
    migrations=Path(__file__).parent / "migrations",
    queue=QueueSpec(name="gateway", routing_keys=CONSUMED),
    extra_queues=(
        QueueSpec(
            name="gateway.ingest",
            routing_keys=("post.requested",),
            prefetch=16,
            exchange_suffix=INGEST_SUFFIX,
        ),
    ),
)
MEDIA_KEY = web.AppKey("media_probe", MediaProbe)


def create_app(settings: Settings) -> web.Application:
    """Build the gateway application; nothing connects until the app starts."""
    metrics = Metrics("gateway")
    runtime = Runtime(settings, SPEC, metrics)
    media = MediaProbe(
        allow_loopback=settings.allow_loopback_media, timeout=settings.media_fetch_timeout
    )
    service = GatewayService(lambda: runtime.pool, settings, media)
    runtime.set_handler(EventConsumer(runtime, SCHEMA, service).handle)
    runtime.set_raw_handler("gateway.ingest", IngestConsumer(runtime, SCHEMA, service).handle)

    async def housekeeping(rt: Runtime) -> None:
        async def loop() -> None:
            while True:
                try:
                    await service.purge_expired()
                except Exception as exc:  # the next round retries; never kill the loop
                    log.warning("housekeeping_failed", error=str(exc))
                await asyncio.sleep(60)

        rt.spawn(loop(), "gateway-housekeeping")

    runtime.on_ready(housekeeping)
    app = create_base_app(runtime, middlewares=(api_middleware,), client_max_size=1024**2)
    app[SERVICE_KEY] = service
    app[ANALYTICS_KEY] = AnalyticsService(lambda: runtime.pool)
    app[MEDIA_KEY] = media

    async def media_session(_: web.Application) -> AsyncIterator[None]:
        await media.start()
        yield
        await media.close()

    app.cleanup_ctx.append(media_session)
    add_routes(app, settings.public_base_url, settings.amqp_exchange)
    install_webhooks(app, runtime, settings, metrics.registry)
    return app
