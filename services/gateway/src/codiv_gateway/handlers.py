"""HTTP entry points of the public API (thin): parse, call the service, answer or problem+json."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pydantic
from aiohttp import web
from codiv_common.asyncapi import build_asyncapi
from codiv_common.logging import bind_context, get_logger
from codiv_common.runtime import NotReady

from . import domain
from .analytics import (
    ANALYTICS_KEY,
    AccountAnalytics,
    AccountAnalyticsQuery,
    AnalyticsQuery,
    PostAnalytics,
    PostAnalyticsQuery,
    WorkspaceAnalytics,
)
from .domain import FieldError, Problem
from .models import (
    Accepted,
    BoardList,
    ConnectStart,
    Deleted,
    ExportQuery,
    Post,
    PostCreate,
    PostList,
    PostListQuery,
    PostUpdate,
    Profile,
    ProfileCreate,
    ProfileList,
    ValidationReport,
)
from .openapi import Operation, build_spec, render_docs
from .service import Caller, CheckedPost, GatewayService, Outcome, RateLimit, pydantic_errors

log = get_logger(__name__)

SERVICE_KEY = web.AppKey("gateway_service", GatewayService)
SPEC_KEY = web.AppKey("openapi_spec", dict)
ASYNCAPI_KEY = web.AppKey("asyncapi", dict[str, Any])
_CALLER = web.RequestKey("codiv_caller", Caller)
_RATE = web.RequestKey("codiv_rate", RateLimit)

HandlerT = Callable[[web.Request], Awaitable[web.StreamResponse]]
PROBLEM_JSON = "application/problem+json"


# ------------------------------------------------------------------ plumbing


def problem_response(problem: Problem) -> web.Response:
    return web.Response(
        text=json.dumps(problem.body()),
        status=problem.status,
        content_type=PROBLEM_JSON,
        headers=problem.headers,
    )


def _http_problem(exc: web.HTTPException) -> Problem:
    status = exc.status
    if status == 413:
        return Problem(
            413, "payload_too_large", "Request body too large", "Bodies are 1 MiB at most."
        )
    if status == 404:
        return Problem(404, "not_found", "No such endpoint", "See /docs for the operations.")
    if status == 405:
        allow = exc.headers.get("Allow", "")
        return Problem(
            405,
            "method_not_allowed",
            "Method not allowed",
            f"Allowed: {allow}.",
            headers={"Allow": allow},
        )
    return Problem(status, "http_error", exc.reason or "Error", exc.text or exc.reason)


@web.middleware
async def api_middleware(request: web.Request, handler: HandlerT) -> web.StreamResponse:
    """Authenticate and rate-limit /v1; turn every error into problem+json."""
    try:
        if request.path.startswith("/v1/") or request.path == "/v1":
            service = request.app[SERVICE_KEY]
            caller = await service.authenticate(request.headers.get("Authorization"))
            bind_context(workspace_id=str(caller.workspace_id))
            request[_CALLER] = caller
            limit = await service.count_request(caller)
            request[_RATE] = limit
            if limit.exceeded:
                raise Problem(
                    429,
                    "rate_limited",
                    "Too many requests",
                    f"This API key may make {limit.limit} requests per "
                    f"{limit.window_seconds} s; retry in {limit.reset_seconds} s.",
                    headers={"Retry-After": str(limit.reset_seconds)},
                )
        response = await handler(request)
    except Problem as problem:
        response = problem_response(problem)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = problem_response(_http_problem(exc))
    except NotReady as exc:
        response = problem_response(
            Problem(
                503,
                "service_unavailable",
                "Service starting",
                str(exc),
                headers={"Retry-After": "1"},
            )
        )
    except Exception:
        log.exception("unhandled_error", path=request.path)
        response = problem_response(
            Problem(500, "internal_error", "Internal error", "Something went wrong on our side.")
        )
    rate = request.get(_RATE)
    if isinstance(rate, RateLimit) and not response.prepared:
        response.headers.update(rate.headers())
    return response


def _caller(request: web.Request) -> Caller:
    return request[_CALLER]


def _service(request: web.Request) -> GatewayService:
    return request.app[SERVICE_KEY]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def read_json(request: web.Request) -> Any:
    """The body as JSON whatever the declared Content-Type (the product's curl examples)."""
    raw = await request.read()
    if not raw.strip():
        raise Problem(
            400, "invalid_json", "Malformed JSON", "The body is empty; send a JSON object."
        )
    try:
        value = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise Problem(
            400, "invalid_json", "Malformed JSON", f"The body is not valid JSON: {exc}"
        ) from None
    refuse_nul(value)
    return value


def _nul_field(value: Any, path: str = "") -> str | None:
    """The field path of the first string holding a NUL character (Postgres refuses them)."""
    if isinstance(value, str):
        return (path or "body") if "\x00" in value else None
    if isinstance(value, dict):
        for k, v in value.items():
            found = (
                _nul_field(k, path) if "\x00" in k else _nul_field(v, f"{path}.{k}" if path else k)
            )
            if found:
                return found
    if isinstance(value, list):
        for i, v in enumerate(value):
            found = _nul_field(v, f"{path}[{i}]")
            if found:
                return found
    return None


def refuse_nul(value: Any) -> None:
    field = _nul_field(value)
    if field is not None:
        raise domain.validation_problem([FieldError(field, "must not contain NUL characters")])


def idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not 1 <= len(key) <= 255 or not all(32 < ord(c) < 127 for c in key):
        raise Problem(
            400,
            "invalid_idempotency_key",
            "Invalid Idempotency-Key",
            "An Idempotency-Key is 1-255 printable ASCII characters without spaces.",
            [FieldError("Idempotency-Key", "must be 1-255 printable ASCII characters")],
        )
    return key


def reply(outcome: Outcome) -> web.Response:
    headers = {"Idempotent-Replayed": "true"} if outcome.replayed else {}
    return web.json_response(outcome.body, status=outcome.status, headers=headers)


def parse_query(model: type[pydantic.BaseModel], request: web.Request) -> Any:
    refuse_nul(dict(request.query))
    try:
        return model.model_validate(dict(request.query))
    except pydantic.ValidationError as exc:
        raise domain.validation_problem(pydantic_errors(exc)) from None


def fingerprint(request: web.Request, body: Any) -> str:
    return domain.request_hash(request.method, request.path, body)


async def _nothing() -> None:
    return None


# ------------------------------------------------------------------ profiles


async def create_profile(request: web.Request) -> web.StreamResponse:
    service, caller = _service(request), _caller(request)
    raw = await read_json(request)

    async def prepare() -> ProfileCreate:
        try:
            return ProfileCreate.model_validate(raw)
        except pydantic.ValidationError as exc:
            raise domain.validation_problem(pydantic_errors(exc)) from None

    async def run(conn: Any, body: ProfileCreate) -> tuple[int, dict[str, Any]]:
        return await service.create_profile(conn, caller, body)

    return reply(
        await service.execute(
            caller, idempotency_key(request), fingerprint(request, raw), prepare, run
        )
    )


async def list_profiles(request: web.Request) -> web.StreamResponse:
    return web.json_response(await _service(request).list_profiles(_caller(request)))


async def get_profile(request: web.Request) -> web.StreamResponse:
    name = request.match_info["profile_name"]
    return web.json_response(await _service(request).get_profile(_caller(request), name))


async def delete_profile(request: web.Request) -> web.StreamResponse:
    name = request.match_info["profile_name"]
    return web.json_response(await _service(request).delete_profile(_caller(request), name))


async def connect_pinterest(request: web.Request) -> web.StreamResponse:
    service, caller = _service(request), _caller(request)
    name = request.match_info["profile_name"]

    async def run(conn: Any, _: None) -> tuple[int, dict[str, Any]]:
        return await service.start_connect(conn, caller, name)

    return reply(
        await service.execute(
            caller, idempotency_key(request), fingerprint(request, None), _nothing, run
        )
    )


async def disconnect_pinterest(request: web.Request) -> web.StreamResponse:
    name = request.match_info["profile_name"]
    body = await _service(request).disconnect(_caller(request), name)
    return web.json_response(body, status=202)


async def sync_boards(request: web.Request) -> web.StreamResponse:
    service, caller = _service(request), _caller(request)
    name = request.match_info["profile_name"]

    async def run(conn: Any, _: None) -> tuple[int, dict[str, Any]]:
        return await service.request_sync(conn, caller, name)

    return reply(
        await service.execute(
            caller, idempotency_key(request), fingerprint(request, None), _nothing, run
        )
    )


async def list_boards(request: web.Request) -> web.StreamResponse:
    name = request.match_info["profile_name"]
    return web.json_response(await _service(request).list_boards(_caller(request), name))


# ------------------------------------------------------------------ posts


async def create_post(request: web.Request) -> web.StreamResponse:
    service, caller = _service(request), _caller(request)
    raw = await read_json(request)

    async def prepare() -> CheckedPost:
        return await service.check_post(raw)

    async def run(conn: Any, checked: CheckedPost) -> tuple[int, dict[str, Any]]:
        return await service.create_post(conn, caller, checked)

    return reply(
        await service.execute(
            caller, idempotency_key(request), fingerprint(request, raw), prepare, run
        )
    )


async def validate_post(request: web.Request) -> web.StreamResponse:
    raw = await read_json(request)
    idempotency_key(request)  # validated; a preflight changes nothing, so nothing is stored
    return web.json_response(await _service(request).validate_post(_caller(request), raw))


async def get_post(request: web.Request) -> web.StreamResponse:
    post_id = request.match_info["post_id"]
    return web.json_response(await _service(request).get_post(_caller(request), post_id))


async def list_posts(request: web.Request) -> web.StreamResponse:
    query = parse_query(PostListQuery, request)
    return web.json_response(await _service(request).list_posts(_caller(request), query))


async def update_post(request: web.Request) -> web.StreamResponse:
    service, caller = _service(request), _caller(request)
    post_id = request.match_info["post_id"]
    raw = await read_json(request)

    async def prepare() -> PostUpdate:
        return await service.check_update(raw)

    async def run(conn: Any, update: PostUpdate) -> tuple[int, dict[str, Any]]:
        return await service.update_post(conn, caller, post_id, update)

    return reply(
        await service.execute(
            caller, idempotency_key(request), fingerprint(request, raw), prepare, run
        )
    )


async def cancel_post(request: web.Request) -> web.StreamResponse:
    post_id = request.match_info["post_id"]
    return web.json_response(await _service(request).cancel_post(_caller(request), post_id))


CSV_COLUMNS = (
    "id",
    "status",
    "profile_name",
    "post_type",
    "title",
    "description",
    "media_urls",
    "pinterest_board_id",
    "pinterest_board_name",
    "pinterest_link",
    "scheduled_date",
    "created_at",
    "pin_id",
    "pin_url",
    "error_code",
    "error_message",
)


def _csv_line(values: list[Any]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf).writerow(values)
    return buf.getvalue().encode()


async def export_posts(request: web.Request) -> web.StreamResponse:
    service, caller = _service(request), _caller(request)
    query: ExportQuery = parse_query(ExportQuery, request)
    rows = service.export_posts(caller, query)
    first = await anext(rows, None)  # errors surface as problem+json before streaming
    ctype = "text/csv" if query.format == "csv" else "application/json"
    resp = web.StreamResponse(
        headers={
            "Content-Type": f"{ctype}; charset=utf-8",
            "Content-Disposition": f'attachment; filename="posts.{query.format}"',
        }
    )
    rate = request.get(_RATE)
    if isinstance(rate, RateLimit):
        resp.headers.update(rate.headers())
    await resp.prepare(request)
    if query.format == "csv":
        await resp.write(_csv_line(list(CSV_COLUMNS)))
    else:
        await resp.write(b"[")
    count = 0
    post = first
    while post is not None:
        if query.format == "csv":
            err = post.get("error") or {}
            values = [
                *(post.get(c) for c in CSV_COLUMNS[:6]),
                " ".join(post["media_urls"]),
                *(post.get(c) for c in CSV_COLUMNS[7:14]),
                err.get("code"),
                err.get("message"),
            ]
            await resp.write(_csv_line(["" if v is None else v for v in values]))
        else:
            await resp.write((b"," if count else b"") + json.dumps(post).encode())
        count += 1
        post = await anext(rows, None)
    if query.format == "json":
        await resp.write(b"]")
    await resp.write_eof()
    return resp


# ------------------------------------------------------------------ analytics


async def post_analytics(request: web.Request) -> web.StreamResponse:
    query = parse_query(PostAnalyticsQuery, request)
    body = await request.app[ANALYTICS_KEY].post_analytics(
        _caller(request).workspace_id, request.match_info["post_id"], query
    )
    return web.json_response(body)


async def account_analytics(request: web.Request) -> web.StreamResponse:
    query = parse_query(AccountAnalyticsQuery, request)
    body = await request.app[ANALYTICS_KEY].account_analytics(
        _caller(request).workspace_id, request.match_info["profile_name"], query
    )
    return web.json_response(body)


async def workspace_analytics(request: web.Request) -> web.StreamResponse:
    query = parse_query(AnalyticsQuery, request)
    body = await request.app[ANALYTICS_KEY].workspace_analytics(
        _caller(request).workspace_id, query
    )
    return web.json_response(body)


# ------------------------------------------------------------------ documentation


async def openapi_json(request: web.Request) -> web.StreamResponse:
    return web.json_response(request.app[SPEC_KEY])


async def asyncapi_json(request: web.Request) -> web.StreamResponse:
    """The AsyncAPI 3 document of the events (internal producers publish post.requested)."""
    return web.json_response(request.app[ASYNCAPI_KEY])


async def docs(request: web.Request) -> web.StreamResponse:
    return web.Response(text=render_docs(request.app[SPEC_KEY]), content_type="text/html")


_POST_JSON_ARRAY = {
    "application/json": {
        "schema": {"type": "array", "items": {"$ref": "#/components/schemas/Post"}}
    },
    "text/csv": {"schema": {"type": "string"}},
}

OPERATIONS: list[Operation] = [
    Operation("POST", "/v1/profiles", create_profile, "createProfile", "Create a profile",
              "Profiles", 201, Profile, ProfileCreate, errors=(403, 409)),
    Operation("GET", "/v1/profiles", list_profiles, "listProfiles", "List profiles",
              "Profiles", 200, ProfileList),
    Operation("GET", "/v1/profiles/{profile_name}", get_profile, "getProfile",
              "Get a profile with its Pinterest connection, token health and boards count",
              "Profiles", 200, Profile, errors=(404,)),
    Operation("DELETE", "/v1/profiles/{profile_name}", delete_profile, "deleteProfile",
              "Delete a profile (its scheduled posts are cancelled, its account disconnected)",
              "Profiles", 200, Deleted, errors=(404,)),
    Operation("POST", "/v1/profiles/{profile_name}/connections/pinterest", connect_pinterest,
              "connectPinterest", "Start connecting a Pinterest account: open authorize_url",
              "Connections", 201, ConnectStart, errors=(404,)),
    Operation("DELETE", "/v1/profiles/{profile_name}/connections/pinterest",
              disconnect_pinterest, "disconnectPinterest",
              "Disconnect the profile's Pinterest account", "Connections", 202, Accepted,
              errors=(404, 409)),
    Operation("POST", "/v1/profiles/{profile_name}/boards:sync", sync_boards, "syncBoards",
              "Ask for the profile's boards to be synced from Pinterest", "Connections", 202,
              Accepted, errors=(404, 409)),
    Operation("GET", "/v1/profiles/{profile_name}/boards", list_boards, "listBoards",
              "The profile's boards and sections (as last synced)", "Connections", 200,
              BoardList, errors=(404,)),
    Operation("POST", "/v1/posts", create_post, "createPost",
              "Publish a pin now or at scheduled_date", "Posts", 202, Post, PostCreate,
              errors=(403, 404, 409),
              description="Answers 202 with the post (resolved board, scheduled_date in UTC) "
              "and warnings. Two to five media_urls on an image post make a multi-image pin. "
              "Media findings (aspect ratio, size) come from POST /v1/posts:validate."),
    Operation("POST", "/v1/posts:validate", validate_post, "validatePost",
              "Preflight: every rule plus a media check; creates nothing, uses no quota",
              "Posts", 200, ValidationReport, PostCreate),
    Operation("GET", "/v1/posts", list_posts, "listPosts", "List posts, newest first",
              "Posts", 200, PostList, query=PostListQuery),
    Operation("GET", "/v1/posts/export", export_posts, "exportPosts",
              "Export posts as CSV or JSON (streamed), same filters as the list", "Posts",
              200, None, query=ExportQuery, content=_POST_JSON_ARRAY),
    Operation("GET", "/v1/posts/{post_id}", get_post, "getPost",
              "Get a post with its status, pin, error and timeline", "Posts", 200, Post,
              errors=(404,)),
    Operation("PATCH", "/v1/posts/{post_id}", update_post, "updatePost",
              "Edit or reschedule a post until it is released", "Posts", 200, Post,
              PostUpdate, errors=(404, 409)),
    Operation("DELETE", "/v1/posts/{post_id}", cancel_post, "cancelPost",
              "Cancel a post until it is released", "Posts", 200, Post, errors=(404, 409)),
    Operation("GET", "/v1/posts/{post_id}/analytics", post_analytics, "getPostAnalytics",
              "A post's daily figures and totals per metric", "Analytics", 200, PostAnalytics,
              query=PostAnalyticsQuery, errors=(404,),
              description="Impressions, saves, pin clicks, outbound clicks (video: views, "
              "average watch time, starts, 95% completions) per UTC day, with Pinterest's "
              "data_status; days not final yet are replaced when collected again. At most "
              "90 days per request (422 range_too_long); an empty range answers zeros and a note."),
    Operation("GET", "/v1/analytics", workspace_analytics, "getAnalytics",
              "Totals over the workspace's posts, grouped by day, board or post, with top posts",
              "Analytics", 200, WorkspaceAnalytics, query=AnalyticsQuery, errors=(404,)),
    Operation("GET", "/v1/profiles/{profile_name}/analytics", account_analytics,
              "getProfileAnalytics", "The profile's Pinterest account analytics per day",
              "Analytics", 200, AccountAnalytics, query=AccountAnalyticsQuery, errors=(404,)),
]  # fmt: skip


def add_routes(app: web.Application, server_url: str, exchange: str = "codiv") -> None:
    for op in OPERATIONS:
        app.router.add_route(op.method, op.path, op.handler)
    app[SPEC_KEY] = build_spec(OPERATIONS, server_url=server_url)
    app.router.add_get("/openapi.json", openapi_json)
    app[ASYNCAPI_KEY] = build_asyncapi(exchange)
    app.router.add_get("/asyncapi.json", asyncapi_json)
    app.router.add_get("/docs", docs)
