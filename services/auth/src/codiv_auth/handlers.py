"""HTTP entry points of the auth service: the OAuth callback and the internal token API."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from codiv_common.crypto import constant_time_equal
from codiv_common.logging import get_logger

from .domain import (
    AccountConflict,
    AccountNotFound,
    AuthError,
    ConnectFailed,
    NeedsReauth,
    RefreshUnavailable,
    StateRejected,
    TokenDecryptionFailed,
    success_redirect,
)
from .service import AccessToken, AuthMetrics, Connections, Tokens

log = get_logger(__name__)


@dataclass(frozen=True)
class AuthComponents:
    """What the handlers need, built by the composition root once the session exists."""

    connections: Connections
    tokens: Tokens
    metrics: AuthMetrics
    internal_service_token: str
    success_url: str


COMPONENTS_KEY = web.AppKey("auth_components", AuthComponents)


# ---------------------------------------------------------------- pages

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;
color:#222}}h1{{font-size:1.4rem}}.code{{color:#777;font-size:.85rem}}</style></head>
<body><h1>{title}</h1><p>{message}</p><p>{hint}</p><p class="code">Error code: {code}</p>
</body></html>
"""

_RESTART = "Go back to Codiv and start connecting your Pinterest account again."


def error_page(
    status: int, title: str, message: str, code: str, hint: str = _RESTART
) -> web.Response:
    body = _PAGE.format(
        title=html.escape(title),
        message=html.escape(message),
        hint=html.escape(hint),
        code=html.escape(code),
    )
    return web.Response(
        status=status,
        text=body,
        content_type="text/html",
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


_STATE_MESSAGES = {
    "has expired": "This connection link has expired (links work for 10 minutes).",
    "was already used": "This connection link was already used.",
    "was tampered with": "This connection link is not valid.",
    "is malformed": "This connection link is not valid.",
    "is missing": "This connection link is incomplete.",
}


async def oauth_callback(request: web.Request) -> web.StreamResponse:
    """``GET /oauth/pinterest/callback?code=...&state=...`` (or ``?error=...``)."""
    comp = request.app[COMPONENTS_KEY]
    query = request.query
    error = query.get("error")
    if error is not None:
        comp.metrics.callbacks.labels("denied" if error == "access_denied" else "error").inc()
        log.info("oauth_callback_error", error=error[:100])
        if error == "access_denied":
            return error_page(
                400,
                "Pinterest access was not granted",
                "You chose not to allow Codiv to access your Pinterest account, so nothing "
                "was connected.",
                "access_denied",
                "To publish to Pinterest, go back to Codiv, connect again and choose Allow.",
            )
        return error_page(
            400,
            "Pinterest could not connect your account",
            f"Pinterest reported an error: {error[:100]}.",
            "oauth_error",
        )
    try:
        result = await comp.connections.complete(query.get("code"), query.get("state"))
    except StateRejected as exc:
        comp.metrics.callbacks.labels("invalid_state").inc()
        log.warning("oauth_state_rejected", reason=exc.reason)
        return error_page(
            400,
            "This connection link cannot be used",
            _STATE_MESSAGES.get(exc.reason, "This connection link is not valid.")
            + " Nothing was changed.",
            "invalid_state",
        )
    except AccountConflict as exc:
        comp.metrics.callbacks.labels("conflict").inc()
        return error_page(409, "Pinterest account already connected", exc.message, exc.code, "")
    except ConnectFailed as exc:
        comp.metrics.callbacks.labels(exc.code).inc()
        log.warning("oauth_connect_failed", code=exc.code)
        return error_page(exc.status, "Pinterest account not connected", exc.message, exc.code)
    comp.metrics.callbacks.labels("reconnected" if result.reconnected else "connected").inc()
    location = success_redirect(
        comp.success_url,
        {
            "profile_name": result.profile_name,
            "account_id": str(result.account_id),
            "status": "connected",
            "boards": "synced" if result.boards_synced else "syncing",
        },
    )
    raise web.HTTPFound(location, headers={"Cache-Control": "no-store"})


# ---------------------------------------------------------------- internal API


def _problem(status: int, code: str, detail: str, **extra: Any) -> web.Response:
    body = {"type": "about:blank", "status": status, "code": code, "detail": detail, **extra}
    headers = {"Cache-Control": "no-store"}
    if "retry_after" in extra:
        headers["Retry-After"] = str(max(1, round(extra["retry_after"])))
    return web.json_response(
        body, status=status, content_type="application/problem+json", headers=headers
    )


def _authorized(request: web.Request, expected: str) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return (
        scheme.lower() == "bearer" and bool(token) and constant_time_equal(token.strip(), expected)
    )


def _token_response(token: AccessToken) -> web.Response:
    return web.json_response(
        {
            "access_token": token.token,
            "expires_at": token.expires_at.isoformat().replace("+00:00", "Z"),
        },
        headers={"Cache-Control": "no-store"},
    )


async def _internal(request: web.Request, operation: str) -> web.Response:
    comp = request.app[COMPONENTS_KEY]
    if not _authorized(request, comp.internal_service_token):
        comp.metrics.access_tokens.labels(operation, "unauthorized").inc()
        return _problem(401, "unauthorized", "a valid service token is required")
    account_id = request.match_info["account_id"]
    try:
        if operation == "get":
            token = await comp.tokens.access_token(account_id)
        else:
            token = await comp.tokens.invalidate(account_id, await _rejected_sha256(request))
    except AccountNotFound as exc:
        comp.metrics.access_tokens.labels(operation, "not_found").inc()
        return _problem(404, exc.code, exc.message)
    except NeedsReauth as exc:
        comp.metrics.access_tokens.labels(operation, "needs_reauth").inc()
        return _problem(409, exc.code, exc.message, account_id=exc.account_id, reason=exc.reason)
    except RefreshUnavailable as exc:
        comp.metrics.access_tokens.labels(operation, "unavailable").inc()
        return _problem(503, exc.code, exc.message, retry_after=exc.retry_after)
    except TokenDecryptionFailed as exc:
        comp.metrics.access_tokens.labels(operation, "decryption_failed").inc()
        log.error("token_decryption_failed", account_id=account_id)
        return _problem(500, exc.code, "the stored token cannot be decrypted; see auth's logs")
    except AuthError as exc:  # pragma: no cover - every subclass is mapped above
        return _problem(500, exc.code, exc.message)
    comp.metrics.access_tokens.labels(operation, "ok").inc()
    return _token_response(token)


async def _rejected_sha256(request: web.Request) -> str | None:
    """``{"rejected_token_sha256": "<hex>"}`` from an invalidate body, if sent."""
    if not request.can_read_body:
        return None
    try:
        body = await request.json()
    except ValueError:
        return None
    value = body.get("rejected_token_sha256") if isinstance(body, dict) else None
    if isinstance(value, str) and len(value) == 64:
        return value.lower()
    return None


async def get_access_token(request: web.Request) -> web.Response:
    """``GET /internal/v1/accounts/{account_id}/access-token``."""
    return await _internal(request, "get")


async def invalidate_access_token(request: web.Request) -> web.Response:
    """``POST /internal/v1/accounts/{account_id}/access-token:invalidate``."""
    return await _internal(request, "invalidate")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/oauth/pinterest/callback", oauth_callback)
    app.router.add_get("/internal/v1/accounts/{account_id}/access-token", get_access_token)
    app.router.add_post(
        "/internal/v1/accounts/{account_id}/access-token:invalidate", invalidate_access_token
    )
