"""Composition root of the auth service."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
from aiohttp import web
from codiv_common.broker import QueueSpec
from codiv_common.http import create_base_app
from codiv_common.logging import get_logger
from codiv_common.metrics import Metrics
from codiv_common.runtime import Runtime, ServiceSpec
from codiv_pinterest.client import PinterestClient

from .adapters.postgres import AccountRepository
from .consumers import ROUTING_KEYS, EventConsumer
from .domain import TokenCipher
from .handlers import COMPONENTS_KEY, AuthComponents, add_routes
from .health import ExpiryPolicy, ExpiryWatch
from .service import (
    AuthMetrics,
    BoardPolicy,
    BoardSync,
    Connections,
    OAuthApp,
    TokenPolicy,
    Tokens,
    Worker,
)
from .settings import Secrets, Settings, resolve_secrets

log = get_logger(__name__)

SCHEMA = "auth"
SPEC = ServiceSpec(
    name="auth",
    schema=SCHEMA,
    migrations=Path(__file__).parent / "migrations",
    queue=QueueSpec(name="auth", routing_keys=ROUTING_KEYS, prefetch=8),
)
SESSION_KEY = web.AppKey("pinterest_session", aiohttp.ClientSession)


def create_app(settings: Settings, secrets: Secrets | None = None) -> web.Application:
    """Build the auth application; nothing connects until the app starts.

    Raises :class:`codiv_auth.settings.ConfigError` when a required secret is missing.
    """
    secrets = secrets or resolve_secrets(settings)
    metrics = Metrics("auth")
    auth_metrics = AuthMetrics(metrics.registry)
    runtime = Runtime(settings, SPEC, metrics)
    app = create_base_app(runtime)
    add_routes(app)

    def pool() -> asyncpg.Pool:
        return runtime.pool

    async def wiring(app: web.Application) -> AsyncIterator[None]:
        # Outermost context: the one ClientSession of the process is opened before the
        # runtime starts its loops and closed after the runtime stopped them.
        for warning in secrets.warnings:
            log.warning("DEV_MODE_INSECURE_SETTING", detail=warning)
        async with aiohttp.ClientSession(
            headers={"User-Agent": "codiv-auth/0.1"}, raise_for_status=False
        ) as session:
            app[SESSION_KEY] = session
            client = PinterestClient(session, settings.api_url, timeout=settings.pinterest_timeout)
            repo = AccountRepository(pool, SCHEMA)
            oauth_app = OAuthApp(
                secrets.client_id,
                secrets.client_secret,
                settings.oauth_redirect_uri,
                settings.scopes,
            )
            tokens = Tokens(
                repo,
                client,
                TokenCipher(secrets.key_ring),
                oauth_app,
                TokenPolicy(
                    ahead_ratio=settings.refresh_ahead_ratio,
                    jitter_ratio=settings.refresh_jitter_ratio,
                    lease=settings.refresh_lease,
                    retry_base=settings.refresh_retry_base,
                    retry_max=settings.refresh_retry_max,
                    min_validity=settings.access_token_min_validity,
                    invalidate_coalesce=settings.invalidate_coalesce_seconds,
                ),
                auth_metrics,
            )
            tokens.on_refresh_failure = ExpiryWatch(
                repo,
                ExpiryPolicy(
                    within=dt.timedelta(days=settings.token_expiring_days),
                    min_failures=settings.token_expiring_min_failures,
                ),
            )
            boards = BoardSync(
                repo,
                client,
                tokens,
                BoardPolicy(
                    interval=settings.board_sync_interval,
                    concurrency=settings.board_sync_concurrency,
                    lease=settings.board_sync_lease,
                ),
                auth_metrics,
            )
            batch = settings.refresh_batch_size
            refresh_worker = Worker(
                "token_refresh",
                lambda: tokens.refresh_due(batch, settings.refresh_concurrency),
                settings.refresh_interval,
                batch,
            )
            board_worker = Worker(
                "board_sync",
                lambda: boards.sync_due(10),
                min(settings.refresh_interval, settings.board_sync_interval),
                10,
            )
            connections = Connections(
                repo,
                client,
                tokens,
                boards,
                oauth_app,
                secrets.oauth_state_secret,
                auth_metrics,
                spawn=runtime.spawn,
                callback_sync_timeout=settings.callback_sync_timeout,
                on_boards_requested=board_worker.wake,
            )
            state_purge = Worker(
                "oauth_state_purge",
                lambda: _purge(repo, settings.oauth_state_ttl),
                3600.0,
                1_000_000,
            )
            runtime.set_handler(EventConsumer(pool, SCHEMA, connections, board_worker.wake).handle)
            app[COMPONENTS_KEY] = AuthComponents(
                connections=connections,
                tokens=tokens,
                metrics=auth_metrics,
                internal_service_token=secrets.internal_service_token,
                success_url=settings.oauth_success_url,
            )

            async def start_loops(rt: Runtime) -> None:
                rt.spawn(refresh_worker.run(), "token-refresh")
                rt.spawn(board_worker.run(), "board-sync")
                rt.spawn(state_purge.run(), "oauth-state-purge")

            async def stop_loops() -> None:
                for worker in (refresh_worker, board_worker, state_purge):
                    await worker.stop(settings.shutdown_timeout / 2)

            runtime.on_ready(start_loops)
            runtime.on_stop(stop_loops)
            yield

    app.cleanup_ctx.insert(0, wiring)
    return app


async def _purge(repo: AccountRepository, ttl: float) -> int:
    await repo.purge_used_states(dt.timedelta(seconds=ttl))
    return 0
