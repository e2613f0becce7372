"""Composition root of the publisher service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from aiohttp import web
from codiv_common.broker import QueueSpec
from codiv_common.http import create_base_app
from codiv_common.metrics import Metrics
from codiv_common.runtime import Runtime, ServiceSpec
from codiv_common.urlguard import GuardedResolver
from codiv_pinterest.client import PinterestClient

from .adapters.auth import AuthTokenClient
from .adapters.media import VideoDownloader
from .consumers import PostDueConsumer
from .metrics import PublisherMetrics
from .metrics_collector import ACCOUNT_EVENTS, AnalyticsWiring
from .pauses import PAUSE_EVENTS, PauseConsumer, grace_loop
from .service import PublishService
from .settings import Settings

SCHEMA = "publisher"
MIGRATIONS = Path(__file__).parent / "migrations"


def service_spec(settings: Settings) -> ServiceSpec:
    """The queue's prefetch is the number of posts handled at once."""
    return ServiceSpec(
        name="publisher",
        schema=SCHEMA,
        migrations=MIGRATIONS,
        queue=QueueSpec(
            name="publisher",
            routing_keys=tuple(dict.fromkeys(("post.due", *ACCOUNT_EVENTS, *PAUSE_EVENTS))),
            prefetch=settings.publish_concurrency,
        ),
    )


def create_app(settings: Settings) -> web.Application:
    """Build the publisher application; nothing connects until the app starts."""
    metrics = Metrics("publisher")
    publisher_metrics = PublisherMetrics(metrics.registry)
    runtime = Runtime(settings, service_spec(settings), metrics)
    consumer = PostDueConsumer()
    analytics = AnalyticsWiring(settings, SCHEMA, runtime)
    pauses = PauseConsumer(lambda: runtime.pool, SCHEMA)
    runtime.set_handler(pauses.wrap(analytics.accounts.wrap(consumer.handle)))

    async def start_grace_loop(rt: Runtime) -> None:
        rt.spawn(
            grace_loop(
                lambda: rt.pool, SCHEMA, settings.pause_grace_hours, settings.pause_check_interval
            ),
            "publisher-pause-grace",
        )

    runtime.on_ready(start_grace_loop)
    app = create_base_app(runtime)

    async def clients(_: web.Application) -> AsyncIterator[None]:
        # One session for Pinterest and auth; one for customers' video URLs, whose
        # resolver refuses non-public addresses at connect time.
        api = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max(100, settings.publish_concurrency * 4))
        )
        downloads = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                resolver=GuardedResolver(allow_loopback=settings.allow_loopback_media),
                limit=settings.publish_concurrency * 2,
            )
        )
        try:
            consumer.bind(
                PublishService(
                    pool=lambda: runtime.pool,
                    schema=SCHEMA,
                    tokens=AuthTokenClient(
                        api,
                        settings.auth_url,
                        settings.internal_service_token,
                        margin=settings.token_expiry_margin,
                        timeout=settings.auth_timeout,
                    ),
                    pinterest=PinterestClient(
                        api,
                        settings.pinterest_api_url,
                        timeout=settings.pinterest_timeout,
                        upload_timeout=settings.pinterest_upload_timeout,
                    ),
                    downloader=VideoDownloader(
                        downloads,
                        max_bytes=settings.video_max_bytes,
                        timeout=settings.download_timeout,
                        connect_timeout=settings.download_connect_timeout,
                        allow_loopback=settings.allow_loopback_media,
                        temp_dir=settings.temp_dir,
                    ),
                    settings=settings,
                    metrics=publisher_metrics,
                )
            )
            analytics.bind(api)
            yield
        finally:
            await downloads.close()
            await api.close()

    # Before the runtime's own lifecycle: the sessions exist before the consumer starts
    # and close only after it stopped and in-flight posts finished.
    app.cleanup_ctx.insert(0, clients)
    return app
