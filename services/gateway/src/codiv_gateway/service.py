"""Gateway use cases: accounts, profiles, posts, idempotency, quotas, rate limits, events."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urlencode

import asyncpg
import pydantic
from codiv_common import outbox, signed
from codiv_common.db import Conn
from codiv_common.events import (
    AccountDisconnectRequested,
    AccountDisconnectRequestedEvent,
    AccountSyncRequested,
    AccountSyncRequestedEvent,
    Event,
    PostCancelled,
    PostCancelledEvent,
    PostContent,
    PostError,
    PostFailed,
    PostFailedEvent,
    PostRequested,
    PostRequestedEvent,
    PostRescheduled,
    PostRescheduledEvent,
    PostSubmission,
)
from codiv_common.logging import get_logger
from codiv_common.urlguard import DnsCache, UnresolvableHost, UnsafeURL, check_url

from . import domain
from .adapters.media import MediaProbe
from .adapters.postgres import Db, Store
from .analytics import METRICS_EVENTS, apply_metrics_event
from .domain import FieldError, Finding, Problem
from .models import (
    ExportQuery,
    Post,
    PostCreate,
    PostListQuery,
    PostUpdate,
    ProfileCreate,
)
from .settings import Settings

log = get_logger(__name__)

T = TypeVar("T")
PRODUCER = "gateway"
PROFILE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
URL_FIELDS = ("pinterest_cover_image_url",)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Caller:
    """The authenticated workspace behind a request."""

    workspace_id: uuid.UUID
    plan: str
    api_key_id: uuid.UUID


@dataclass(frozen=True)
class RateLimit:
    limit: int
    remaining: int
    reset_seconds: int
    window_seconds: int

    @property
    def exceeded(self) -> bool:
        return self.remaining < 0

    def headers(self) -> dict[str, str]:
        remaining = max(self.remaining, 0)
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(remaining),
            "RateLimit-Reset": str(self.reset_seconds),
            "RateLimit-Policy": f"{self.limit};w={self.window_seconds}",
            "RateLimit": f"limit={self.limit}, remaining={remaining}, reset={self.reset_seconds}",
        }


@dataclass(frozen=True)
class Outcome:
    status: int
    body: dict[str, Any]
    replayed: bool = False


@dataclass(frozen=True)
class CheckedPost:
    """A post body that passed the field rules and the SSRF check."""

    body: PostCreate
    warnings: list[Finding]


def pydantic_errors(exc: pydantic.ValidationError, prefix: str = "") -> list[FieldError]:
    """Field errors in API terms (``media_urls[1]``), with plain messages."""
    out: list[FieldError] = []
    for err in exc.errors(include_url=False):
        loc = ""
        for part in err["loc"]:
            if isinstance(part, int):
                loc += f"[{part}]"
            else:
                loc += ("." if loc else "") + ("from" if part == "from_" else str(part))
        field = (prefix + loc) or "body"
        etype, ctx = err["type"], err.get("ctx") or {}
        if etype == "extra_forbidden":
            message = "is not a known field"
        elif etype == "missing":
            message = "is required"
        elif etype == "string_too_long":
            message = f"must be at most {ctx.get('max_length')} characters"
        elif etype == "too_long":
            message = f"must have at most {ctx.get('max_length')} items"
        elif etype == "too_short":
            message = f"must have at least {ctx.get('min_length')} item(s)"
        elif etype == "value_error":
            message = str(ctx.get("error") or err["msg"]).removeprefix("Value error, ")
        elif etype == "literal_error":
            message = f"must be one of {ctx.get('expected')}"
        else:
            message = err["msg"]
        out.append(FieldError(field, message))
    return out


def post_fields(row: asyncpg.Record) -> dict[str, Any]:
    fields: dict[str, Any] = dict(row["request"])
    return fields


def post_out(row: asyncpg.Record, timeline: list[asyncpg.Record] | None = None) -> dict[str, Any]:
    req = post_fields(row)
    error = row["error"]
    post = Post(
        id=str(row["id"]),
        status=row["status"],
        profile_name=row["profile_name"],
        platforms=req.get("platforms") or ["pinterest"],
        post_type=row["post_type"],
        title=req.get("title"),
        description=req.get("description"),
        media_urls=req.get("media_urls") or [],
        pinterest_board_id=row["board_id"],
        pinterest_board_name=row["board_name"],
        pinterest_board_section_id=req.get("pinterest_board_section_id"),
        pinterest_link=req.get("pinterest_link"),
        pinterest_alt_text=req.get("pinterest_alt_text"),
        pinterest_cover_image_url=req.get("pinterest_cover_image_url"),
        pinterest_cover_key_frame_time=req.get("pinterest_cover_key_frame_time"),
        scheduled_date=row["scheduled_at"],
        revision=row["revision"],
        attempts=row["attempts"],
        pin_id=row["pin_id"],
        pin_url=row["pin_url"],
        error=(
            {
                "code": str(error.get("code", "unknown")),
                "message": str(error.get("message", "")),
                "retryable": bool(error.get("retryable", False)),
            }
            if error
            else None
        ),
        warnings=row["warnings"] or [],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        timeline=(
            [
                {"at": t["at"], "kind": t["kind"], "attempt": t["attempt"], "message": t["message"]}
                for t in timeline
            ]
            if timeline is not None
            else None
        ),
    )
    return post.model_dump(mode="json", exclude_none=False)


def _safe_request(payload: Any) -> dict[str, Any]:
    """The displayable part of a rejected submission: known fields of the right types."""
    data = payload if isinstance(payload, dict) else {}
    out: dict[str, Any] = {"platforms": ["pinterest"]}
    for key in (
        "profile_name",
        "title",
        "description",
        "pinterest_board_id",
        "pinterest_board_section_id",
        "pinterest_link",
        "pinterest_alt_text",
        "pinterest_cover_image_url",
    ):
        value = data.get(key)
        out[key] = value[:2048] if isinstance(value, str) else None
    out["post_type"] = data.get("post_type") if data.get("post_type") == "video" else "image"
    media = data.get("media_urls")
    out["media_urls"] = (
        [m[:2048] for m in media if isinstance(m, str)][:5] if isinstance(media, list) else []
    )
    frame = data.get("pinterest_cover_key_frame_time")
    number = isinstance(frame, int | float) and not isinstance(frame, bool)
    out["pinterest_cover_key_frame_time"] = float(frame) if number and frame is not None else None
    return out


def profile_out(row: asyncpg.Record, now: datetime) -> dict[str, Any]:
    status = row["account_status"] or "not_connected"
    expires = row["refresh_token_expires_at"]
    if status == "connected":
        health = "expiring" if expires is not None and expires - now < timedelta(days=7) else "ok"
    elif status == "needs_reauth":
        health = "needs_reauth"
    else:
        health = "none"
    return {
        "id": str(row["id"]),
        "object": "profile",
        "name": row["name"],
        "created_at": domain.rfc3339(row["created_at"]),
        "pinterest": {
            "status": status,
            "account_id": row["account_id"],
            "username": row["username"],
            "token_health": health,
            "reason": row["reason"],
            "refresh_token_expires_at": domain.rfc3339(expires) if expires else None,
            "connected_at": domain.rfc3339(row["connected_at"]) if row["connected_at"] else None,
        },
        "boards_count": row["boards_count"],
        "boards_synced_at": (
            domain.rfc3339(row["boards_synced_at"]) if row["boards_synced_at"] else None
        ),
    }


def reconnect_problem(profile_name: str, status: str, reason: str | None) -> Problem:
    how = (
        f"Reconnect it: POST /v1/profiles/{profile_name}/connections/pinterest and open the "
        "authorize_url it returns."
    )
    if status == "needs_reauth":
        return Problem(
            409,
            "account_needs_reauth",
            "The Pinterest account needs to be reconnected",
            f"Pinterest no longer accepts this profile's authorisation ({reason or 'revoked'}). "
            + how,
            [FieldError("profile_name", "its Pinterest account needs reauthorisation")],
        )
    return Problem(
        409,
        "account_not_connected",
        "No Pinterest account is connected",
        f"Profile {profile_name!r} has no connected Pinterest account. "
        + how.replace("Reconnect", "Connect"),
        [FieldError("profile_name", "has no connected Pinterest account")],
    )


class GatewayService:
    """The gateway's use cases. ``pool`` is called per use (raises NotReady until up)."""

    def __init__(
        self,
        pool: Callable[[], asyncpg.Pool],
        settings: Settings,
        media: MediaProbe | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._pool = pool
        self.settings = settings
        self._media = media
        self._now = clock
        self._dns = DnsCache()  # many posts name the same CDN host

    # ============================================================== auth, limits

    async def authenticate(self, authorization: str | None) -> Caller:
        key = domain.parse_bearer(authorization)
        if key is None:
            raise domain.unauthorized()
        row = await Store.key_owner(self._pool(), domain.hash_api_key(key))
        if row is None:
            raise domain.unauthorized()
        return Caller(row["workspace_id"], row["plan"], row["id"])

    async def count_request(self, caller: Caller) -> RateLimit:
        s = self.settings
        limit = s.rate_limit_pro if caller.plan == "pro" else s.rate_limit_free
        now = self._now()
        window = domain.window_start(now, s.rate_limit_window_seconds)
        count = await Store.count_request(self._pool(), caller.api_key_id, window)
        reset = max(1, int((window - now).total_seconds()) + s.rate_limit_window_seconds)
        return RateLimit(limit, limit - count, reset, s.rate_limit_window_seconds)

    async def purge_expired(self) -> None:
        now = self._now()
        async with self._pool().acquire() as conn:
            await Store.purge(
                conn,
                now - timedelta(seconds=2 * self.settings.rate_limit_window_seconds),
                now - timedelta(hours=self.settings.idempotency_ttl_hours),
            )

    # ============================================================== idempotency

    async def execute(
        self,
        caller: Caller,
        idempotency_key: str | None,
        fingerprint: str,
        prepare: Callable[[], Awaitable[T]],
        operation: Callable[[Conn, T], Awaitable[tuple[int, dict[str, Any]]]],
    ) -> Outcome:
        """Run ``operation`` in one transaction, at most once per idempotency key.

        The key row is inserted first in the operation's transaction, so a concurrent
        retry waits on it and then replays the stored answer. Only successful answers
        are stored: an error rolls everything back, the key included, so a corrected
        retry with the same key runs. The same key with another body is refused.
        """
        expired_before = self._now() - timedelta(hours=self.settings.idempotency_ttl_hours)
        pool = self._pool()
        if idempotency_key is not None:
            row = await Store.get_idempotency(pool, caller.workspace_id, idempotency_key)
            if row is not None and row["created_at"] >= expired_before:
                return self._replay(row, fingerprint)
        prepared = await prepare()
        async with pool.acquire() as conn, conn.transaction():
            if idempotency_key is not None:
                claimed = await Store.claim_idempotency(
                    conn, caller.workspace_id, idempotency_key, fingerprint, expired_before
                )
                if not claimed:
                    row = await Store.get_idempotency(conn, caller.workspace_id, idempotency_key)
                    if row is not None:
                        return self._replay(row, fingerprint)
                    raise Problem(
                        409,
                        "idempotency_conflict",
                        "A request with this Idempotency-Key is in progress",
                        "Retry in a moment.",
                        headers={"Retry-After": "1"},
                    )
            status, body = await operation(conn, prepared)
            if idempotency_key is not None:
                await Store.store_idempotency(
                    conn, caller.workspace_id, idempotency_key, status, body
                )
        return Outcome(status, body)

    @staticmethod
    def _replay(row: asyncpg.Record, fingerprint: str) -> Outcome:
        if row["request_hash"] != fingerprint:
            raise Problem(
                422,
                "idempotency_key_reused",
                "Idempotency-Key reused with a different request",
                "This Idempotency-Key was used with another body or endpoint in the last 24 "
                "hours. Use a new key for a new request.",
                [FieldError("Idempotency-Key", "was used for a different request")],
            )
        if row["status"] is None:
            raise Problem(
                409,
                "idempotency_conflict",
                "A request with this Idempotency-Key is in progress",
                "Retry in a moment.",
                headers={"Retry-After": "1"},
            )
        return Outcome(row["status"], row["body"], replayed=True)

    # ============================================================== profiles

    async def create_profile(
        self, conn: Conn, caller: Caller, body: ProfileCreate
    ) -> tuple[int, dict[str, Any]]:
        await Store.lock_workspace(conn, caller.workspace_id)
        if caller.plan == "free":
            limit = self.settings.free_max_profiles
            if await Store.count_profiles(conn, caller.workspace_id) >= limit:
                raise Problem(
                    403,
                    "plan_limit_reached",
                    "Plan limit reached",
                    f"The free plan allows at most {limit} profiles. Delete a profile or "
                    "upgrade to pro.",
                    [FieldError("name", f"the free plan allows {limit} profiles")],
                    limit={"name": "profiles", "max": limit, "used": limit},
                    resets_at=None,
                )
        if not await Store.insert_profile(conn, uuid.uuid4(), caller.workspace_id, body.name):
            raise Problem(
                409,
                "profile_exists",
                "The profile already exists",
                f"This workspace already has a profile named {body.name!r}.",
                [FieldError("name", "is already used by another profile")],
            )
        row = await Store.profile(conn, caller.workspace_id, body.name)
        assert row is not None
        return 201, profile_out(row, self._now())

    async def list_profiles(self, caller: Caller) -> dict[str, Any]:
        rows = await Store.profiles(self._pool(), caller.workspace_id)
        now = self._now()
        return {"object": "list", "data": [profile_out(r, now) for r in rows], "has_more": False}

    async def _profile(self, conn: Db, caller: Caller, name: str, lock: bool = False) -> Any:
        if not PROFILE_NAME_RE.match(name):
            raise domain.not_found("profile", name)
        row = await Store.profile(conn, caller.workspace_id, name, lock=lock)
        if row is None:
            raise domain.not_found("profile", name)
        return row

    async def get_profile(self, caller: Caller, name: str) -> dict[str, Any]:
        return profile_out(await self._profile(self._pool(), caller, name), self._now())

    async def delete_profile(self, caller: Caller, name: str) -> dict[str, Any]:
        """Delete a profile: its scheduled posts are cancelled, its account disconnected."""
        async with self._pool().acquire() as conn, conn.transaction():
            row = await self._profile(conn, caller, name, lock=True)
            events: list[Any] = []
            for post_id in await Store.scheduled_posts_of_profile(conn, row["id"]):
                await self._cancel(conn, caller, post_id, "profile deleted")
            if row["account_status"] in ("connected", "needs_reauth"):
                events.append(
                    AccountDisconnectRequestedEvent(
                        workspace_id=caller.workspace_id,
                        producer=PRODUCER,
                        payload=AccountDisconnectRequested(profile_id=row["id"]),
                    )
                )
            await Store.delete_profile(conn, row["id"])
            await outbox.enqueue(conn, "gateway", *events)
        return {"id": str(row["id"]), "object": "profile", "deleted": True}

    # ============================================================== connections, boards

    async def start_connect(
        self, conn: Conn, caller: Caller, name: str
    ) -> tuple[int, dict[str, Any]]:
        row = await self._profile(conn, caller, name)
        s = self.settings
        ttl = s.oauth_state_ttl_seconds
        now = self._now()
        state = signed.sign(
            s.oauth_state_secret.get_secret_value().encode(),
            {
                "ws": str(caller.workspace_id),
                "pid": str(row["id"]),
                "pname": row["name"],
                "nonce": uuid.uuid4().hex,
            },
            ttl,
            now=now.timestamp(),
        )
        query = urlencode(
            {
                "client_id": s.pinterest_client_id,
                "redirect_uri": s.oauth_redirect_uri,
                "response_type": "code",
                "scope": s.pinterest_scopes,
                "state": state,
            }
        )
        sep = "&" if "?" in s.pinterest_oauth_url else "?"
        return 201, {
            "authorize_url": f"{s.pinterest_oauth_url}{sep}{query}",
            "state_expires_at": domain.rfc3339(now + timedelta(seconds=ttl)),
        }

    async def disconnect(self, caller: Caller, name: str) -> dict[str, Any]:
        async with self._pool().acquire() as conn, conn.transaction():
            row = await self._profile(conn, caller, name, lock=True)
            if row["account_status"] not in ("connected", "needs_reauth"):
                raise Problem(
                    409,
                    "account_not_connected",
                    "No Pinterest account is connected",
                    f"Profile {name!r} has no connected Pinterest account to disconnect.",
                )
            await outbox.enqueue(
                conn,
                "gateway",
                AccountDisconnectRequestedEvent(
                    workspace_id=caller.workspace_id,
                    producer=PRODUCER,
                    payload=AccountDisconnectRequested(profile_id=row["id"]),
                ),
            )
        return {
            "object": "request",
            "status": "accepted",
            "detail": "Disconnecting; the profile shows status 'disconnected' once done.",
        }

    async def request_sync(
        self, conn: Conn, caller: Caller, name: str
    ) -> tuple[int, dict[str, Any]]:
        row = await self._profile(conn, caller, name)
        if row["account_status"] != "connected":
            raise reconnect_problem(name, row["account_status"] or "", row["reason"])
        await outbox.enqueue(
            conn,
            "gateway",
            AccountSyncRequestedEvent(
                workspace_id=caller.workspace_id,
                producer=PRODUCER,
                payload=AccountSyncRequested(profile_id=row["id"]),
            ),
        )
        return 202, {
            "object": "request",
            "status": "accepted",
            "detail": "Board sync requested; GET the boards again in a few seconds.",
        }

    async def list_boards(self, caller: Caller, name: str) -> dict[str, Any]:
        async with self._pool().acquire() as conn:
            row = await self._profile(conn, caller, name)
            boards = await Store.board_rows(conn, row["id"])
        return {
            "object": "list",
            "data": [
                {
                    "id": b["board_id"],
                    "name": b["name"],
                    "privacy": b["privacy"],
                    "sections": [
                        {"id": str(s["id"]), "name": str(s["name"])} for s in b["sections"] or []
                    ],
                }
                for b in boards
            ],
            "synced_at": (
                domain.rfc3339(row["boards_synced_at"]) if row["boards_synced_at"] else None
            ),
        }

    # ============================================================== posts: checks

    async def url_errors(self, fields: dict[str, Any]) -> tuple[list[FieldError], list[Finding]]:
        """SSRF check of every media and cover URL (resolved concurrently)."""
        targets: list[tuple[str, str]] = [
            (f"media_urls[{i}]", u) for i, u in enumerate(fields.get("media_urls") or [])
        ]
        targets += [(name, fields[name]) for name in URL_FIELDS if fields.get(name)]
        allow = self.settings.allow_loopback_media
        timeout = self.settings.media_resolve_timeout

        async def one(field: str, url: str) -> FieldError | Finding | None:
            try:
                await check_url(url, allow_loopback=allow, timeout=timeout, cache=self._dns)
            except UnresolvableHost as exc:
                return Finding(
                    "media_host_unresolved",
                    field,
                    f"host {exc.host!r} does not resolve from here right now; it is checked "
                    "again when the post is published",
                )
            except UnsafeURL as exc:
                return FieldError(field, f"is refused: {exc.message}")
            return None

        results = await asyncio.gather(*(one(f, u) for f, u in targets))
        errors = [r for r in results if isinstance(r, FieldError)]
        findings = [r for r in results if isinstance(r, Finding)]
        return errors, findings

    def parse_post(self, raw: Any) -> PostCreate:
        try:
            body = PostCreate.model_validate(raw)
        except pydantic.ValidationError as exc:
            raise domain.validation_problem(pydantic_errors(exc)) from None
        fields = body.model_dump()
        errors = domain.cross_field_errors(fields)
        errors += domain.schedule_errors(body.scheduled_date, self._now())
        if errors:
            raise domain.validation_problem(errors)
        return body

    async def check_post(self, raw: Any) -> CheckedPost:
        body = self.parse_post(raw)
        fields = body.model_dump()
        errors, findings = await self.url_errors(fields)
        if errors:
            raise domain.validation_problem(errors)
        return CheckedPost(body, domain.request_warnings(fields) + findings)

    async def _resolve_target(
        self, conn: Conn, caller: Caller, profile_name: str, board_value: str, section: str | None
    ) -> tuple[Any, domain.BoardRef]:
        profile = await Store.profile(conn, caller.workspace_id, profile_name)
        if profile is None:
            raise Problem(
                404,
                "not_found",
                "No such profile",
                f"No profile {profile_name!r} in this workspace.",
                [FieldError("profile_name", "no profile with this name")],
            )
        if profile["account_status"] != "connected":
            raise reconnect_problem(
                profile_name, profile["account_status"] or "", profile["reason"]
            )
        board = domain.resolve_board(
            board_value, await Store.boards(conn, profile["id"]), profile_name
        )
        domain.check_section(section, board)
        return profile, board

    async def _take_upload(self, conn: Conn, caller: Caller) -> None:
        """Count the upload against the free plan's monthly allowance (atomically).

        Pro has no limit, so nothing is counted: a per-workspace counter row would make
        every post of a workspace wait for the previous one's commit. Called as the last
        write of the post's transaction to hold that row lock as briefly as possible.
        """
        if caller.plan != "free":
            return
        now = self._now()
        limit = self.settings.free_max_uploads_per_month
        if not await Store.take_upload(conn, caller.workspace_id, domain.month_start(now), limit):
            resets = domain.rfc3339(domain.next_month_start(now))
            raise Problem(
                403,
                "plan_limit_reached",
                "Plan limit reached",
                f"The free plan allows {limit} uploads per calendar month (UTC); the limit "
                f"resets at {resets}. Upgrade to pro for unlimited uploads.",
                limit={"name": "uploads_per_month", "max": limit, "used": limit},
                resets_at=resets,
            )

    @staticmethod
    def _content(fields: dict[str, Any], account_id: str, board: domain.BoardRef) -> PostContent:
        return PostContent(
            post_type=fields["post_type"],
            pinterest_account_id=account_id,
            board_id=board.id,
            board_section_id=fields.get("pinterest_board_section_id"),
            title=fields.get("title"),
            description=fields.get("description"),
            link=fields.get("pinterest_link"),
            alt_text=fields.get("pinterest_alt_text"),
            media_urls=list(fields["media_urls"]),
            cover_image_url=fields.get("pinterest_cover_image_url"),
            cover_key_frame_time=fields.get("pinterest_cover_key_frame_time"),
        )

    @staticmethod
    def _request_json(body: PostCreate) -> dict[str, Any]:
        data = body.model_dump(mode="json")
        data.pop("scheduled_date", None)
        return data

    # ============================================================== posts: commands

    async def create_post(
        self,
        conn: Conn,
        caller: Caller,
        checked: CheckedPost,
        *,
        post_id: uuid.UUID | None = None,
        source: str = "api",
    ) -> tuple[int, dict[str, Any]]:
        body = checked.body
        profile, board = await self._resolve_target(
            conn,
            caller,
            body.profile_name,
            body.pinterest_board_id,
            body.pinterest_board_section_id,
        )
        post_id = post_id or uuid.uuid4()
        now = self._now()
        scheduled = body.scheduled_date.astimezone(UTC) if body.scheduled_date else None
        content = self._content(body.model_dump(), profile["account_id"], board)
        await Store.insert_post(
            conn,
            {
                "id": post_id,
                "workspace_id": caller.workspace_id,
                "profile_id": profile["id"],
                "profile_name": profile["name"],
                "status": "scheduled",
                "post_type": body.post_type,
                "request": self._request_json(body),
                "content": content.model_dump(mode="json"),
                "board_id": board.id,
                "board_name": board.name,
                "scheduled_at": scheduled,
                "warnings": [w.as_dict() for w in checked.warnings],
                "created_at": now,
                "updated_at": now,
                "source": source,
            },
        )
        when = f"for {domain.rfc3339(scheduled)}" if scheduled else "to publish now"
        origin = "" if source == "api" else f" from {source}"
        await Store.add_timeline(conn, post_id, now, "accepted", f"accepted {when}{origin}")
        await outbox.enqueue(
            conn,
            "gateway",
            PostRequestedEvent(
                workspace_id=caller.workspace_id,
                correlation_id=post_id,
                producer=PRODUCER,
                payload=PostRequested(
                    post_id=post_id,
                    profile_id=profile["id"],
                    profile_name=profile["name"],
                    scheduled_at=scheduled,
                    content=content,
                ),
            ),
        )
        await self._take_upload(conn, caller)  # last: holds the usage row briefly
        row = await Store.post(conn, caller.workspace_id, post_id)
        assert row is not None
        return 202, post_out(row)

    @staticmethod
    def _post_id(value: str) -> uuid.UUID:
        try:
            return uuid.UUID(value)
        except ValueError:
            raise domain.not_found("post", value) from None

    async def _locked_post(self, conn: Conn, caller: Caller, post_id: str) -> asyncpg.Record:
        row = await Store.post(conn, caller.workspace_id, self._post_id(post_id), lock=True)
        if row is None:
            raise domain.not_found("post", post_id)
        return row

    @staticmethod
    def _released_problem(row: asyncpg.Record, action: str) -> Problem:
        status = row["status"]
        why = {
            "publishing": "it was released for publishing",
            "published": "it is published",
            "failed": "it has failed",
            "cancelled": "it is cancelled",
        }.get(status, f"it is {status}")
        return Problem(
            409,
            "post_not_editable",
            f"The post can no longer be {action}",
            f"Post {row['id']} cannot be {action} because {why}; changes are possible only "
            "while it is scheduled.",
            post_status=status,
        )

    def parse_update(self, raw: Any) -> PostUpdate:
        try:
            return PostUpdate.model_validate(raw)
        except pydantic.ValidationError as exc:
            raise domain.validation_problem(pydantic_errors(exc)) from None

    async def check_update(self, raw: Any) -> PostUpdate:
        update = self.parse_update(raw)
        errors, _ = await self.url_errors(update.model_dump(exclude_unset=True))
        errors += domain.schedule_errors(update.scheduled_date, self._now())
        if errors:
            raise domain.validation_problem(errors)
        return update

    async def update_post(
        self, conn: Conn, caller: Caller, post_id: str, update: PostUpdate
    ) -> tuple[int, dict[str, Any]]:
        row = await self._locked_post(conn, caller, post_id)
        if row["status"] != "scheduled":
            raise self._released_problem(row, "edited")
        changes = update.model_dump(mode="json", exclude_unset=True)
        if not changes:
            return 200, post_out(row)
        old = post_fields(row)
        merged = {**old, **{k: v for k, v in changes.items() if k != "scheduled_date"}}
        merged["scheduled_date"] = (
            changes["scheduled_date"]
            if "scheduled_date" in changes
            else (domain.rfc3339(row["scheduled_at"]) if row["scheduled_at"] else None)
        )
        try:
            body = PostCreate.model_validate(merged)
        except pydantic.ValidationError as exc:
            raise domain.validation_problem(pydantic_errors(exc)) from None
        fields = body.model_dump()
        errors = domain.cross_field_errors(fields)
        if errors:
            raise domain.validation_problem(errors)
        profile_row = await Store.profile(conn, caller.workspace_id, row["profile_name"])
        account_id = row["content"].get("pinterest_account_id")
        if "pinterest_board_id" in changes or "pinterest_board_section_id" in changes:
            if profile_row is None:
                raise domain.not_found("profile", row["profile_name"])
            board = domain.resolve_board(
                body.pinterest_board_id,
                await Store.boards(conn, profile_row["id"]),
                row["profile_name"],
            )
            domain.check_section(body.pinterest_board_section_id, board)
        else:
            board = domain.BoardRef(row["board_id"], row["board_name"] or "")
        if profile_row is not None and profile_row["account_id"]:
            account_id = profile_row["account_id"]
        content = self._content(fields, account_id, board)
        content_changed = content.model_dump(mode="json") != row["content"]
        scheduled = body.scheduled_date.astimezone(UTC) if body.scheduled_date else None
        revision = row["revision"] + (1 if content_changed else 0)
        now = self._now()
        await Store.update_post(
            conn,
            row["id"],
            {
                "request": self._request_json(body),
                "content": content.model_dump(mode="json"),
                "board_id": board.id,
                "board_name": board.name,
                "scheduled_at": scheduled,
                "revision": revision,
                "warnings": [w.as_dict() for w in domain.request_warnings(fields)],
            },
        )
        parts = []
        if content_changed:
            parts.append(f"content edited (revision {revision})")
        if scheduled != row["scheduled_at"]:
            parts.append(
                f"rescheduled to {domain.rfc3339(scheduled) if scheduled else 'publish now'}"
            )
        await Store.add_timeline(
            conn,
            row["id"],
            now,
            "rescheduled" if scheduled != row["scheduled_at"] else "edited",
            "; ".join(parts) or "no effective change",
        )
        if parts:
            await outbox.enqueue(
                conn,
                "gateway",
                PostRescheduledEvent(
                    workspace_id=caller.workspace_id,
                    correlation_id=row["id"],
                    producer=PRODUCER,
                    payload=PostRescheduled(
                        post_id=row["id"],
                        scheduled_at=scheduled,
                        content=content if content_changed else None,
                        revision=revision,
                    ),
                ),
            )
        fresh = await Store.post(conn, caller.workspace_id, row["id"])
        assert fresh is not None
        return 200, post_out(fresh)

    async def _cancel(self, conn: Conn, caller: Caller, post_id: uuid.UUID, why: str) -> None:
        await Store.update_post(conn, post_id, {"status": "cancelled"})
        await Store.add_timeline(conn, post_id, self._now(), "cancelled", why)
        await outbox.enqueue(
            conn,
            "gateway",
            PostCancelledEvent(
                workspace_id=caller.workspace_id,
                correlation_id=post_id,
                producer=PRODUCER,
                payload=PostCancelled(post_id=post_id),
            ),
        )

    async def cancel_post(self, caller: Caller, post_id: str) -> dict[str, Any]:
        async with self._pool().acquire() as conn, conn.transaction():
            row = await self._locked_post(conn, caller, post_id)
            if row["status"] == "scheduled":
                await self._cancel(conn, caller, row["id"], "cancelled by request")
            elif row["status"] != "cancelled":
                raise self._released_problem(row, "cancelled")
            fresh = await Store.post(conn, caller.workspace_id, row["id"])
            assert fresh is not None
            return post_out(fresh)

    # ============================================================== posts: queries

    async def get_post(self, caller: Caller, post_id: str) -> dict[str, Any]:
        async with self._pool().acquire() as conn:
            row = await Store.post(conn, caller.workspace_id, self._post_id(post_id))
            if row is None:
                raise domain.not_found("post", post_id)
            return post_out(row, await Store.timeline(conn, row["id"]))

    async def list_posts(self, caller: Caller, query: PostListQuery) -> dict[str, Any]:
        after = None
        if query.cursor:
            created, pid = domain.decode_cursor(query.cursor)
            after = (created, self._post_id(pid))
        rows = await Store.list_posts(
            self._pool(),
            caller.workspace_id,
            status=query.status,
            profile_name=query.profile_name,
            start=query.from_,
            end=query.to,
            after=after,
            limit=query.limit + 1,
        )
        page = rows[: query.limit]
        has_more = len(rows) > query.limit
        return {
            "object": "list",
            "data": [post_out(r) for r in page],
            "has_more": has_more,
            "next_cursor": (
                domain.encode_cursor(page[-1]["created_at"], str(page[-1]["id"]))
                if has_more
                else None
            ),
        }

    async def export_posts(
        self, caller: Caller, query: ExportQuery, batch: int = 500
    ) -> AsyncIterator[dict[str, Any]]:
        """Every matching post, newest first, read in keyset batches (constant memory)."""
        after: tuple[datetime, uuid.UUID] | None = None
        while True:
            rows = await Store.list_posts(
                self._pool(),
                caller.workspace_id,
                status=query.status,
                profile_name=query.profile_name,
                start=query.from_,
                end=query.to,
                after=after,
                limit=batch,
            )
            for r in rows:
                yield post_out(r)
            if len(rows) < batch:
                return
            after = (rows[-1]["created_at"], rows[-1]["id"])

    # ============================================================== preflight

    async def validate_post(self, caller: Caller, raw: Any) -> dict[str, Any]:
        """Every rule plus a media check; creates nothing and uses no quota."""
        report: dict[str, Any] = {
            "object": "validation",
            "valid": False,
            "errors": [],
            "warnings": [],
            "pinterest_board_id": None,
            "pinterest_board_name": None,
        }
        try:
            body = self.parse_post(raw)
        except Problem as problem:
            report["errors"] = [e.as_dict() for e in problem.errors]
            return report
        fields = body.model_dump()
        errors, findings = await self.url_errors(fields)
        warnings = domain.request_warnings(fields)
        try:
            async with self._pool().acquire() as conn:
                _, board = await self._resolve_target(
                    conn,
                    caller,
                    body.profile_name,
                    body.pinterest_board_id,
                    body.pinterest_board_section_id,
                )
            report["pinterest_board_id"] = board.id
            report["pinterest_board_name"] = board.name
        except Problem as problem:
            errors += problem.errors or [FieldError("body", problem.detail or problem.title)]
        refused = {e.field for e in errors}
        targets = [(f"media_urls[{i}]", u) for i, u in enumerate(body.media_urls)]
        if body.pinterest_cover_image_url:
            targets.append(("pinterest_cover_image_url", body.pinterest_cover_image_url))
        targets = [(f, u) for f, u in targets if f not in refused]
        media_errors, media_findings = await self._check_media(body.post_type, targets)
        errors += media_errors
        report["errors"] = [e.as_dict() for e in errors]
        report["warnings"] = [
            w.as_dict()
            for w in warnings + media_findings + [f for f in findings if f.field in refused]
        ]
        report["valid"] = not errors
        return report

    async def _check_media(
        self, post_type: str, targets: list[tuple[str, str]]
    ) -> tuple[list[FieldError], list[Finding]]:
        if self._media is None:
            return [], [Finding("media_not_checked", None, "media checks are disabled")]
        probes = await asyncio.gather(*(self._media.probe(u) for _, u in targets))
        errors: list[FieldError] = []
        findings: list[Finding] = []
        for (field, _), probe in zip(targets, probes, strict=True):
            if probe.error is not None:
                errors.append(FieldError(field, probe.error))
                continue
            sniffed = domain.sniff_media(probe.head)
            expected = (
                "image" if post_type == "image" or field.startswith("pinterest_cover") else "video"
            )
            declared = (probe.content_type or "").split("/")[0]
            if sniffed.kind == "unknown":
                errors.append(
                    FieldError(
                        field,
                        f"is not a recognised {expected} (content type "
                        f"{probe.content_type or 'missing'})",
                    )
                )
                continue
            if sniffed.kind != expected:
                errors.append(FieldError(field, f"is a {sniffed.kind}, not an {expected}"))
                continue
            if (
                declared
                and declared != sniffed.kind
                and probe.content_type != "application/octet-stream"
            ):
                findings.append(
                    Finding(
                        "content_type_mismatch",
                        field,
                        f"served as {probe.content_type} but the bytes are {sniffed.format}",
                    )
                )
            max_size = 20 * 1024**2 if expected == "image" else 2 * 1024**3
            if probe.size is not None and probe.size > max_size:
                errors.append(
                    FieldError(
                        field, f"is {probe.size} bytes, over the {max_size // 1024**2} MiB limit"
                    )
                )
            if expected == "image":
                findings += domain.image_findings(field, sniffed.width, sniffed.height)
        return errors, findings

    # ============================================================== events

    # ============================================================== internal producers

    def producer_allowed(self, producer: str | None, workspace_id: uuid.UUID) -> bool:
        """Whether RabbitMQ user ``producer`` may submit posts for ``workspace_id``."""
        if not producer:
            return False
        allowed = self.settings.ingest_producers.get(producer, [])
        return "*" in allowed or str(workspace_id) in allowed

    async def ingest_post(
        self,
        conn: Conn,
        workspace_id: uuid.UUID,
        event_id: uuid.UUID,
        payload: Any,
        producer: str,
    ) -> str:
        """Turn a producer's submission into a post with the HTTP path's rules.

        Returns ``accepted``, ``duplicate`` (that post id exists) or ``failed`` (kept as a
        failed post with the reason, and ``post.failed`` emitted). An unknown workspace
        raises :class:`LookupError`: nothing can be tied to it.
        """
        plan = await conn.fetchval("SELECT plan FROM workspaces WHERE id = $1", workspace_id)
        if plan is None:
            raise LookupError(f"no workspace {workspace_id}")
        raw_id = payload.get("post_id") if isinstance(payload, dict) else None
        try:
            post_id = uuid.UUID(str(raw_id))
        except ValueError:
            post_id = uuid.uuid5(uuid.NAMESPACE_URL, f"codiv-ingest:{event_id}")
        if await Store.post(conn, workspace_id, post_id) is not None:
            return "duplicate"
        caller = Caller(workspace_id, plan, uuid.UUID(int=0))
        source = f"producer:{producer}"
        try:
            submission = PostSubmission.model_validate(payload)
            fields = {
                k: v
                for k, v in submission.model_dump().items()
                if k in PostCreate.model_fields and v is not None
            }
            checked = await self.check_post(fields)
            async with conn.transaction():  # a savepoint: a refusal undoes partial writes
                await self.create_post(conn, caller, checked, post_id=post_id, source=source)
            return "accepted"
        except pydantic.ValidationError as exc:
            problem = domain.validation_problem(pydantic_errors(exc, "payload."))
        except Problem as exc:
            problem = exc
        await self._record_rejected(conn, caller, post_id, payload, problem, source)
        return "failed"

    async def _record_rejected(
        self,
        conn: Conn,
        caller: Caller,
        post_id: uuid.UUID,
        payload: Any,
        problem: Problem,
        source: str,
    ) -> None:
        data = _safe_request(payload)
        name = data.get("profile_name") or ""
        profile = await Store.profile(conn, caller.workspace_id, name) if name else None
        reasons = "; ".join(f"{e.field}: {e.message}" for e in problem.errors)
        message = (problem.detail or problem.title) + (f" ({reasons})" if reasons else "")
        error = {"code": problem.code, "message": message, "retryable": False}
        now = self._now()
        await Store.insert_post(
            conn,
            {
                "id": post_id,
                "workspace_id": caller.workspace_id,
                "profile_id": profile["id"] if profile else None,
                "profile_name": name,
                "status": "failed",
                "post_type": data["post_type"],
                "request": data,
                "content": {},
                "board_id": data.get("pinterest_board_id") or "",
                "error": error,
                "created_at": now,
                "updated_at": now,
                "source": source,
            },
        )
        await Store.add_timeline(
            conn, post_id, now, "rejected", f"rejected from {source}: {message}"
        )
        await outbox.enqueue(
            conn,
            "gateway",
            PostFailedEvent(
                workspace_id=caller.workspace_id,
                correlation_id=post_id,
                producer=PRODUCER,
                payload=PostFailed(post_id=post_id, error=PostError(**error)),
            ),
        )
        log.warning("producer_post_rejected", post_id=str(post_id), code=problem.code)

    async def apply_event(self, conn: Conn, event: Event) -> None:
        """Keep the read model current from one post.* or account.* event."""
        etype = event.type
        if etype in METRICS_EVENTS:
            await apply_metrics_event(conn, event)
        elif etype.startswith("post."):
            await self._apply_post_event(conn, event)
        elif etype.startswith("account."):
            await self._apply_account_event(conn, event)

    async def _apply_post_event(self, conn: Conn, event: Event) -> None:
        payload = event.payload.model_dump(mode="json")
        post_id = uuid.UUID(payload["post_id"])
        row = await Store.post(conn, event.workspace_id, post_id, lock=True)
        if row is None:
            log.info("event_for_unknown_post", post_id=str(post_id))
            return
        change = domain.status_change(row["status"], event.type, payload)
        if change is None:
            return
        columns: dict[str, Any] = {}
        for key, value in change.columns.items():
            columns[key] = (
                datetime.fromisoformat(value)
                if key in ("published_at", "released_at") and isinstance(value, str)
                else value
            )
        if change.status is not None:
            columns["status"] = change.status
        if change.attempt is not None and change.attempt > row["attempts"]:
            columns["attempts"] = change.attempt
        await Store.update_post(conn, post_id, columns)
        await Store.add_timeline(
            conn, post_id, event.occurred_at, change.kind, change.message, change.attempt
        )

    async def _apply_account_event(self, conn: Conn, event: Event) -> None:
        payload: Any = event.payload
        profile = await Store.profile_in_workspace(conn, payload.profile_id, event.workspace_id)
        if profile is None:
            log.info("event_for_unknown_profile", profile_id=str(payload.profile_id))
            return
        at = event.occurred_at
        if event.type == "account.connected":
            await Store.upsert_account(
                conn,
                profile["id"],
                event.workspace_id,
                payload.account_id,
                "connected",
                at,
                username=payload.username,
            )
        elif event.type == "account.needs_reauth":
            await Store.upsert_account(
                conn,
                profile["id"],
                event.workspace_id,
                payload.account_id,
                "needs_reauth",
                at,
                reason=payload.reason,
            )
        elif event.type == "account.disconnected":
            await Store.upsert_account(
                conn, profile["id"], event.workspace_id, payload.account_id, "disconnected", at
            )
        elif event.type == "account.token_expiring":
            await Store.set_token_expiry(conn, profile["id"], payload.refresh_token_expires_at)
        elif event.type == "account.boards_synced" and (
            profile["boards_synced_at"] is None or profile["boards_synced_at"] <= at
        ):
            await Store.replace_boards(
                conn,
                profile["id"],
                [b.model_dump(mode="json") for b in payload.boards],
                at,
            )
