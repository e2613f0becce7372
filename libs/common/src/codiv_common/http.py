"""The HTTP bootstrap every service uses: health, readiness, metrics, request logging."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import structlog
from aiohttp import web

from .logging import bind_context, get_logger
from .metrics import CONTENT_TYPE_LATEST, Metrics
from .runtime import NotReady, Runtime

log = get_logger(__name__)

RUNTIME_KEY = web.AppKey("runtime", Runtime)
METRICS_KEY = web.AppKey("metrics", Metrics)

_QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

HandlerT = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def observe(request: web.Request, handler: HandlerT) -> web.StreamResponse:
    """Bind a request id, count and time the request, log one summary line."""
    structlog.contextvars.clear_contextvars()
    request_id = request.headers.get("X-Request-Id") or uuid.uuid4().hex
    if len(request_id) > 64 or not request_id.isprintable():
        request_id = uuid.uuid4().hex
    bind_context(request_id=request_id)
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
    except web.HTTPException as exc:
        status = exc.status
        exc.headers["X-Request-Id"] = request_id
        raise
    except NotReady as exc:
        status = 503
        raise web.HTTPServiceUnavailable(
            text='{"title": "service starting", "detail": "' + str(exc) + '"}',
            content_type="application/json",
            headers={"Retry-After": "1", "X-Request-Id": request_id},
        ) from exc
    finally:
        elapsed = time.perf_counter() - started
        route = _route_name(request)
        metrics = request.app.get(METRICS_KEY)
        if metrics is not None:
            metrics.http_requests.labels(request.method, route, str(status)).inc()
            metrics.http_latency.labels(request.method, route).observe(elapsed)
        if request.path not in _QUIET_PATHS:
            log.info(
                "http_request",
                method=request.method,
                path=request.path,
                route=route,
                status=status,
                duration_ms=round(elapsed * 1000, 2),
            )
    response.headers["X-Request-Id"] = request_id
    return response


def _route_name(request: web.Request) -> str:
    info = request.match_info
    route = getattr(info, "route", None)
    resource = getattr(route, "resource", None)
    if resource is None:
        return "unmatched"
    return str(resource.canonical)


async def healthz(request: web.Request) -> web.Response:
    """Alive: the process answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready: database and broker reachable (503 otherwise)."""
    runtime = request.app[RUNTIME_KEY]
    checks = await runtime.check()
    ok = all(v == "ok" for v in checks.values())
    return web.json_response(
        {"status": "ok" if ok else "unavailable", "checks": checks}, status=200 if ok else 503
    )


async def metrics_handler(request: web.Request) -> web.Response:
    body = request.app[METRICS_KEY].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def create_base_app(
    runtime: Runtime,
    *,
    middlewares: tuple[Callable[..., Awaitable[web.StreamResponse]], ...] = (),
    client_max_size: int = 1024**2,
) -> web.Application:
    """An application with the operational endpoints and the runtime's lifecycle attached.

    The service adds its own routes; ``runtime.start()`` runs at application start-up
    and ``runtime.stop()`` at shutdown (after the server stopped accepting requests).
    """
    app = web.Application(middlewares=[observe, *middlewares], client_max_size=client_max_size)
    app[RUNTIME_KEY] = runtime
    app[METRICS_KEY] = runtime.metrics
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_handler)

    async def lifecycle(_: web.Application) -> AsyncIterator[None]:
        await runtime.start()
        yield
        await runtime.stop()

    app.cleanup_ctx.append(lifecycle)
    return app


def run_app(app: web.Application, host: str, port: int, shutdown_timeout: float) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully.

    aiohttp turns both signals into a graceful exit: the listener closes, in-flight
    requests get ``shutdown_timeout`` seconds, then the cleanup contexts (the runtime's
    stop) run.
    """
    web.run_app(
        app,
        host=host,
        port=port,
        shutdown_timeout=shutdown_timeout,
        print=None,
        access_log=None,
        handle_signals=True,
    )
