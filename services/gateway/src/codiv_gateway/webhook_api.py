"""Webhooks: public API (POST/GET/DELETE /v1/webhooks, deliveries) and event fan-out."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import Any, Literal

import aiohttp
import asyncpg
import pydantic
from aiohttp import web
from codiv_common.crypto import KeyRing
from codiv_common.db import Conn
from codiv_common.events import Event
from codiv_common.logging import get_logger
from codiv_common.runtime import Runtime
from codiv_common.urlguard import GuardedResolver, UnresolvableHost, UnsafeURL, check_url
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, ConfigDict, Field

from . import domain, webhooks
from .adapters.webhooks_repo import WebhookRepo
from .domain import FieldError, Problem
from .handlers import (
    OPERATIONS,
    SERVICE_KEY,
    SPEC_KEY,
    _caller,
    fingerprint,
    idempotency_key,
    parse_query,
    read_json,
    reply,
)
from .models import HttpUrl
from .openapi import Operation, build_spec
from .service import Caller, Outcome, pydantic_errors
from .settings import Settings
from .webhook_worker import WebhookWorker

log = get_logger(__name__)

WebhookEvent = Literal[
    "post.published",
    "post.failed",
    "account.needs_reauth",
    "account.token_expiring",
    "account.reconnected",
]


# ------------------------------------------------------------------ models


class WebhookCreate(BaseModel):
    """An endpoint that receives the workspace's events, signed with its secret."""

    model_config = ConfigDict(extra="forbid")

    url: HttpUrl = Field(description="https URL; must resolve to public addresses only")
    events: list[WebhookEvent] = Field(min_length=1, max_length=5)
    description: str | None = Field(default=None, max_length=200)


class Webhook(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    object: Literal["webhook"] = "webhook"
    url: str
    events: list[str]
    description: str | None
    created_at: datetime
    secret: str | None = Field(
        default=None,
        description="whsec_...: shown once, in the answer that created the webhook; null "
        "afterwards (also on an idempotent replay). Verify Codiv-Signature with it.",
    )


class WebhookList(BaseModel):
    model_config = ConfigDict(extra="forbid")

    object: Literal["list"] = "list"
    data: list[Webhook]
    has_more: bool


class WebhookDeleted(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    object: Literal["webhook"] = "webhook"
    deleted: bool


class DeliveryAttempt(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at: datetime
    attempt: int
    status_code: int | None
    error: str | None
    duration_ms: int | None


class Delivery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="The delivery id (Codiv-Delivery-Id): the same on every retry")
    object: Literal["webhook_delivery"] = "webhook_delivery"
    event: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None
    attempt_log: list[DeliveryAttempt]
    body: dict[str, Any]


class DeliveryList(BaseModel):
    model_config = ConfigDict(extra="forbid")

    object: Literal["list"] = "list"
    data: list[Delivery]
    has_more: bool
    next_cursor: str | None


class DeliveryQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=20, ge=1, le=100)
    cursor: str | None = Field(default=None, max_length=500)


# ------------------------------------------------------------------ use cases


def webhook_out(row: asyncpg.Record, secret: str | None = None) -> dict[str, Any]:
    return Webhook(
        id=str(row["id"]),
        url=row["url"],
        events=list(row["events"]),
        description=row["description"],
        created_at=row["created_at"],
        secret=secret,
    ).model_dump(mode="json")


def delivery_out(row: asyncpg.Record) -> dict[str, Any]:
    pending = row["status"] == "pending"
    return Delivery(
        id=str(row["id"]),
        event=row["event_type"],
        status=row["status"],
        attempts=row["attempts"],
        last_status_code=row["last_status_code"],
        last_error=row["last_error"],
        next_attempt_at=row["next_attempt_at"] if pending else None,
        created_at=row["created_at"],
        delivered_at=row["delivered_at"],
        attempt_log=row["attempt_log"],
        body=row["body"],
    ).model_dump(mode="json")


class WebhookService:
    """Creating, listing and deleting webhooks; turning applied events into deliveries."""

    def __init__(
        self,
        pool: Callable[[], asyncpg.Pool],
        keys: KeyRing,
        *,
        allow_loopback: bool,
        resolve_timeout: float,
    ) -> None:
        self._pool = pool
        self._keys = keys
        self._allow_loopback = allow_loopback
        self._resolve_timeout = resolve_timeout

    async def check(self, raw: Any) -> WebhookCreate:
        """Parse and vet the URL (the same address rules as media URLs; https required)."""
        try:
            body = WebhookCreate.model_validate(raw)
        except pydantic.ValidationError as exc:
            raise domain.validation_problem(pydantic_errors(exc)) from None
        if not body.url.lower().startswith("https://") and not self._allow_loopback:
            raise domain.validation_problem([FieldError("url", "must be an https URL")])
        try:
            await check_url(
                body.url, allow_loopback=self._allow_loopback, timeout=self._resolve_timeout
            )
        except UnresolvableHost as exc:
            raise domain.validation_problem([FieldError("url", exc.message)]) from None
        except UnsafeURL as exc:
            raise domain.validation_problem(
                [FieldError("url", f"is not allowed: {exc.message}")]
            ) from None
        return body

    async def create(
        self, conn: Conn, caller: Caller, body: WebhookCreate, secret: str
    ) -> tuple[int, dict[str, Any]]:
        await conn.execute("SELECT 1 FROM workspaces WHERE id = $1 FOR UPDATE", caller.workspace_id)
        limit = webhooks.MAX_WEBHOOKS_PER_WORKSPACE
        if await WebhookRepo.count(conn, caller.workspace_id) >= limit:
            raise Problem(
                409,
                "webhook_limit_reached",
                "Too many webhooks",
                f"A workspace may have at most {limit} webhooks; delete one first.",
            )
        webhook_id = uuid.uuid4()
        row = await WebhookRepo.insert(
            conn,
            webhook_id,
            caller.workspace_id,
            body.url,
            sorted(set(body.events)),
            body.description,
            self._keys.encrypt(secret, webhook_id.bytes),
        )
        # The stored (replayable) answer carries no secret: it is shown once, below.
        return 201, webhook_out(row)

    async def list(self, caller: Caller) -> dict[str, Any]:
        rows = await WebhookRepo.all(self._pool(), caller.workspace_id)
        return {"object": "list", "data": [webhook_out(r) for r in rows], "has_more": False}

    async def get(self, caller: Caller, webhook_id: str) -> asyncpg.Record:
        row = await WebhookRepo.get(self._pool(), caller.workspace_id, _uuid(webhook_id))
        if row is None:
            raise domain.not_found("webhook", webhook_id)
        return row

    async def delete(self, caller: Caller, webhook_id: str) -> dict[str, Any]:
        if not await WebhookRepo.delete(self._pool(), caller.workspace_id, _uuid(webhook_id)):
            raise domain.not_found("webhook", webhook_id)
        return {"id": webhook_id, "object": "webhook", "deleted": True}

    async def deliveries(
        self, caller: Caller, webhook_id: str, query: DeliveryQuery
    ) -> dict[str, Any]:
        row = await self.get(caller, webhook_id)
        after = None
        if query.cursor:
            created, did = domain.decode_cursor(query.cursor)
            after = (created, _uuid(did))
        rows = await WebhookRepo.deliveries(
            self._pool(), row["id"], after=after, limit=query.limit + 1
        )
        page = rows[: query.limit]
        has_more = len(rows) > query.limit
        return {
            "object": "list",
            "data": [delivery_out(r) for r in page],
            "has_more": has_more,
            "next_cursor": (
                domain.encode_cursor(page[-1]["created_at"], str(page[-1]["id"]))
                if has_more
                else None
            ),
        }


async def enqueue_deliveries(conn: Conn, event: Event) -> int:
    """Turn an applied event into pending deliveries (same transaction: nothing waits on
    HTTP). Post events only once the read model shows that outcome (a stale post.failed
    for a published post announces nothing); one delivery per webhook and post outcome."""
    payload = event.payload.model_dump(mode="json")
    public_type = webhooks.public_event_type(event.type, payload)
    if public_type is None:
        return 0
    webhook_ids = await WebhookRepo.subscribed(conn, event.workspace_id, public_type)
    if not webhook_ids:
        return 0
    data = dict(payload)
    if public_type.startswith("post."):
        post = await conn.fetchrow(
            "SELECT status, profile_name FROM posts WHERE id = $1 AND workspace_id = $2",
            uuid.UUID(payload["post_id"]),
            event.workspace_id,
        )
        if post is None or post["status"] != public_type.removeprefix("post."):
            return 0
        data["profile_name"] = post["profile_name"]
    else:
        profile = await conn.fetchrow(
            "SELECT name FROM profiles WHERE id = $1 AND workspace_id = $2",
            uuid.UUID(payload["profile_id"]),
            event.workspace_id,
        )
        if profile is None:
            return 0
        data["profile_name"] = profile["name"]
        data.pop("reconnected", None)
    key = webhooks.dedupe_key(public_type, str(event.event_id), payload)
    count = 0
    for webhook_id in webhook_ids:
        delivery_id = uuid.uuid4()
        body = webhooks.delivery_body(
            str(delivery_id), public_type, event.occurred_at, str(event.workspace_id), data
        )
        if await WebhookRepo.insert_delivery(
            conn,
            delivery_id,
            webhook_id,
            event.workspace_id,
            public_type,
            event.event_id,
            key,
            body,
        ):
            count += 1
    return count


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise domain.not_found("webhook", value) from None


# ------------------------------------------------------------------ HTTP (thin)

WEBHOOKS_KEY = web.AppKey("webhook_service", WebhookService)


async def create_webhook(request: web.Request) -> web.StreamResponse:
    gateway, hooks, caller = request.app[SERVICE_KEY], request.app[WEBHOOKS_KEY], _caller(request)
    raw = await read_json(request)
    secret = webhooks.generate_secret()

    async def run(conn: Any, body: WebhookCreate) -> tuple[int, dict[str, Any]]:
        return await hooks.create(conn, caller, body, secret)

    outcome = await gateway.execute(
        caller,
        idempotency_key(request),
        fingerprint(request, raw),
        lambda: hooks.check(raw),
        run,
    )
    if not outcome.replayed:
        outcome = Outcome(outcome.status, {**outcome.body, "secret": secret})
    return reply(outcome)


async def list_webhooks(request: web.Request) -> web.StreamResponse:
    return web.json_response(await request.app[WEBHOOKS_KEY].list(_caller(request)))


async def get_webhook(request: web.Request) -> web.StreamResponse:
    row = await request.app[WEBHOOKS_KEY].get(_caller(request), request.match_info["webhook_id"])
    return web.json_response(webhook_out(row))


async def delete_webhook(request: web.Request) -> web.StreamResponse:
    body = await request.app[WEBHOOKS_KEY].delete(
        _caller(request), request.match_info["webhook_id"]
    )
    return web.json_response(body)


async def list_deliveries(request: web.Request) -> web.StreamResponse:
    query = parse_query(DeliveryQuery, request)
    body = await request.app[WEBHOOKS_KEY].deliveries(
        _caller(request), request.match_info["webhook_id"], query
    )
    return web.json_response(body)


WEBHOOK_OPERATIONS: list[Operation] = [
    Operation("POST", "/v1/webhooks", create_webhook, "createWebhook",
              "Register a webhook endpoint; the answer shows its signing secret once",
              "Webhooks", 201, Webhook, WebhookCreate, errors=(409,),
              description="Events: post.published, post.failed, account.needs_reauth, "
              "account.token_expiring, account.reconnected. Each delivery is a POST with "
              "Codiv-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, '<t>.<body>')>, "
              "Codiv-Delivery-Id (stable across retries: deduplicate on it) and Codiv-Event. "
              "Non-2xx answers are retried with exponential backoff for 24 hours."),
    Operation("GET", "/v1/webhooks", list_webhooks, "listWebhooks", "List webhooks",
              "Webhooks", 200, WebhookList),
    Operation("GET", "/v1/webhooks/{webhook_id}", get_webhook, "getWebhook",
              "Get a webhook (without its secret)", "Webhooks", 200, Webhook, errors=(404,)),
    Operation("DELETE", "/v1/webhooks/{webhook_id}", delete_webhook, "deleteWebhook",
              "Delete a webhook and its pending deliveries", "Webhooks", 200, WebhookDeleted,
              errors=(404,)),
    Operation("GET", "/v1/webhooks/{webhook_id}/deliveries", list_deliveries,
              "listWebhookDeliveries",
              "Deliveries of a webhook, newest first, with every attempt's status code",
              "Webhooks", 200, DeliveryList, query=DeliveryQuery, errors=(404,)),
]  # fmt: skip


def key_ring(webhook_secret_keys: str, oauth_state_secret: str) -> KeyRing:
    """The key ring encrypting signing secrets (see the README's settings table)."""
    if webhook_secret_keys.strip():
        return KeyRing.parse(webhook_secret_keys)
    derived = hashlib.sha256(b"codiv-webhook-secrets\x00" + oauth_state_secret.encode()).digest()
    return KeyRing((("derived", derived),))


def install_webhooks(
    app: web.Application, runtime: Runtime, settings: Settings, registry: CollectorRegistry
) -> WebhookWorker:
    """Wire webhooks into the gateway app: service, routes (and their OpenAPI entries),
    the delivery session and the worker loop. Call it after ``handlers.add_routes``."""
    keys = key_ring(
        settings.webhook_secret_keys.get_secret_value(),
        settings.oauth_state_secret.get_secret_value(),
    )
    if keys.current_key_id == "derived":
        log.warning(
            "DEV_MODE_INSECURE_SETTING",
            detail="WEBHOOK_SECRET_KEYS unset: signing secrets are encrypted with a key "
            "derived from OAUTH_STATE_SECRET",
        )
    app[WEBHOOKS_KEY] = WebhookService(
        lambda: runtime.pool,
        keys,
        allow_loopback=settings.allow_loopback_webhooks,
        resolve_timeout=settings.media_resolve_timeout,
    )
    for op in WEBHOOK_OPERATIONS:
        app.router.add_route(op.method, op.path, op.handler)
    app[SPEC_KEY] = build_spec(
        [*OPERATIONS, *WEBHOOK_OPERATIONS], server_url=settings.public_base_url
    )
    sessions: list[aiohttp.ClientSession] = []

    def session() -> aiohttp.ClientSession:
        return sessions[0]

    worker = WebhookWorker(
        lambda: runtime.pool,
        session,
        keys,
        webhooks.RetryPolicy(
            base=settings.webhook_retry_base,
            cap=settings.webhook_retry_max,
            window=timedelta(hours=settings.webhook_retry_hours),
        ),
        timeout=settings.webhook_timeout,
        batch=settings.webhook_batch_size,
        concurrency=settings.webhook_concurrency,
        poll_interval=settings.webhook_poll_interval,
        allow_loopback=settings.allow_loopback_webhooks,
        registry=registry,
    )

    async def delivery_session(_: web.Application) -> AsyncIterator[None]:
        # Every connection goes through GuardedResolver: a webhook host that starts
        # resolving to a private address after its creation check is refused here.
        sessions.append(
            aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    resolver=GuardedResolver(allow_loopback=settings.allow_loopback_webhooks),
                    limit=settings.webhook_concurrency,
                ),
                auto_decompress=False,
            )
        )
        try:
            yield
        finally:
            await sessions.pop().close()

    async def start_worker(rt: Runtime) -> None:
        rt.spawn(worker.run(), "gateway-webhooks")

    # Before the runtime's own lifecycle: the session outlives the worker loop.
    app.cleanup_ctx.insert(0, delivery_session)
    runtime.on_ready(start_worker)
    return worker
