"""The emulator's aiohttp application: Pinterest's /v5 API, /oauth/ and the /_emulator admin API."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar
from urllib.parse import urlencode
from xml.sax.saxutils import escape

from aiohttp import BodyPartReader, web
from aiohttp.typedefs import Middleware
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from codiv_pinterest.emulator.config import ALL_SCOPES, EmulatorConfig, SeedApp, SeedBoard, SeedUser
from codiv_pinterest.emulator.faults import FaultRule
from codiv_pinterest.emulator.state import (
    MISSING_SCOPE,
    ApiError,
    Caller,
    EmulatorState,
    OAuthError,
    UploadRejected,
    bad_request,
    err,
    format_time,
)

__all__ = ["ROUTES", "STATE", "Middleware", "Route", "create_app"]

STATE: Final = web.AppKey("codiv_pinterest_emulator_state", EmulatorState)

_log = logging.getLogger("codiv_pinterest.emulator")

Handler = Callable[[web.Request, EmulatorState, Caller], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    """One emulated Pinterest operation, with its spec rate-limit category and scopes."""

    method: str
    path: str  # relative to /v5, in the spec's {param} form
    operation_id: str
    category: str
    scopes: tuple[str, ...]


ROUTES: Final[tuple[Route, ...]] = (
    Route("GET", "/user_account", "user_account/get", "org_read", ("user_accounts:read",)),
    Route(
        "GET",
        "/user_account/analytics",
        "user_account/analytics",
        "org_analytics",
        ("user_accounts:read",),
    ),
    Route("GET", "/boards", "boards/list", "org_read", ("boards:read",)),
    Route("POST", "/boards", "boards/create", "org_write", ("boards:read", "boards:write")),
    Route("GET", "/boards/{board_id}", "boards/get", "org_read", ("boards:read",)),
    Route(
        "GET", "/boards/{board_id}/sections", "board_sections/list", "org_read", ("boards:read",)
    ),
    Route(
        "POST",
        "/boards/{board_id}/sections",
        "board_sections/create",
        "org_write",
        ("boards:read", "boards:write"),
    ),
    Route(
        "GET",
        "/boards/{board_id}/pins",
        "boards/list_pins",
        "org_read",
        ("boards:read", "pins:read"),
    ),
    Route(
        "POST",
        "/pins",
        "pins/create",
        "org_write",
        ("boards:read", "boards:write", "pins:read", "pins:write"),
    ),
    Route("GET", "/pins", "pins/list", "org_read", ("boards:read", "pins:read")),
    Route("GET", "/pins/{pin_id}", "pins/get", "org_read", ("boards:read", "pins:read")),
    Route(
        "DELETE",
        "/pins/{pin_id}",
        "pins/delete",
        "org_write",
        ("boards:read", "boards:write", "pins:read", "pins:write"),
    ),
    Route(
        "GET",
        "/pins/{pin_id}/analytics",
        "pins/analytics",
        "org_analytics",
        ("boards:read", "pins:read"),
    ),
    Route("POST", "/media", "media/create", "org_write", ("pins:read", "pins:write")),
    Route("GET", "/media/{media_id}", "media/get", "org_read", ("pins:read",)),
)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


async def _json_body(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise bad_request("Content-Type must be application/json.")
    try:
        data = await request.json()
    except ValueError as exc:
        raise bad_request("The request body is not valid JSON.") from exc
    if not isinstance(data, dict):
        raise bad_request("The request body must be a JSON object.")
    return data


def _page_size(request: web.Request) -> int:
    raw = request.query.get("page_size", "25")
    try:
        return int(raw)
    except ValueError as exc:
        raise bad_request("page_size must be an integer.") from exc


def _base_url(request: web.Request, state: EmulatorState) -> str:
    return (state.config.public_url or str(request.url.origin())).rstrip("/")


# -- /v5 handlers ----------------------------------------------------------------


async def _user_account(request: web.Request, state: EmulatorState, caller: Caller) -> web.Response:
    return _json(state.user_json(caller.user))


async def _account_analytics(
    request: web.Request, state: EmulatorState, caller: Caller
) -> web.Response:
    return _json(state.account_analytics(caller, request.query))


async def _list_boards(request: web.Request, state: EmulatorState, caller: Caller) -> web.Response:
    q = request.query
    return _json(
        state.list_boards(caller, q.get("bookmark"), _page_size(request), q.get("privacy"))
    )


async def _create_board(request: web.Request, state: EmulatorState, caller: Caller) -> web.Response:
    return _json(state.create_board(caller, await _json_body(request)), 201)


async def _get_board(request: web.Request, state: EmulatorState, caller: Caller) -> web.Response:
    return _json(state.board_json(state.own_board(caller, request.match_info["board_id"])))


async def _list_sections(
    request: web.Request, state: EmulatorState, caller: Caller
) -> web.Response:
    board_id = request.match_info["board_id"]
    bookmark = request.query.get("bookmark")
    return _json(state.list_sections(caller, board_id, bookmark, _page_size(request)))


async def _create_section(
    request: web.Request, state: EmulatorState, caller: Caller
) -> web.Response:
    body = await _json_body(request)
    return _json(state.create_section(caller, request.match_info["board_id"], body), 201)


async def _board_pins(request: web.Request, state: EmulatorState, caller: Caller) -> web.Response:
    board_id = request.match_info["board_id"]
    bookmark = request.query.get("bookmark")
    return _json(state.board_pins(caller, board_id, bookmark, _page_size(request)))


async def _create_pin(request: web.Request, state: EmulatorState, caller: Caller) -> web.Response:
    return _json(state.create_pin(caller, await _json_body(request)), 201)


async def _list_pins(request: web.Request, state: EmulatorState, caller: Caller) -> web.Response:
    return _json(state.list_pins(caller, request.query.get("bookmark"), _page_size(request)))


async def _get_pin(request: web.Request, state: EmulatorState, caller: Caller) -> web.Response:
    return _json(state.pin_json(state.own_pin(caller, request.match_info["pin_id"]), caller.user))


async def _delete_pin(request: web.Request, state: EmulatorState, caller: Caller) -> web.Response:
    state.delete_pin(caller, request.match_info["pin_id"])
    return web.Response(status=204)


async def _pin_analytics(
    request: web.Request, state: EmulatorState, caller: Caller
) -> web.Response:
    return _json(state.pin_analytics(caller, request.match_info["pin_id"], request.query))


async def _register_media(
    request: web.Request, state: EmulatorState, caller: Caller
) -> web.Response:
    body = await _json_body(request)
    return _json(state.register_media(caller, body, _base_url(request, state)), 201)


async def _get_media(request: web.Request, state: EmulatorState, caller: Caller) -> web.Response:
    return _json(state.media_status(caller, request.match_info["media_id"]))


_HANDLERS: Final[Mapping[str, Handler]] = {
    "user_account/get": _user_account,
    "user_account/analytics": _account_analytics,
    "boards/list": _list_boards,
    "boards/create": _create_board,
    "boards/get": _get_board,
    "board_sections/list": _list_sections,
    "board_sections/create": _create_section,
    "boards/list_pins": _board_pins,
    "pins/create": _create_pin,
    "pins/list": _list_pins,
    "pins/get": _get_pin,
    "pins/delete": _delete_pin,
    "pins/analytics": _pin_analytics,
    "media/create": _register_media,
    "media/get": _get_media,
}


def _api(route: Route, handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def endpoint(request: web.Request) -> web.StreamResponse:
        state = request.app[STATE]
        caller = state.authenticate(request.headers.get("Authorization"))
        if not set(route.scopes) <= caller.token.scopes:
            raise err(MISSING_SCOPE)
        headers = state.check_rate_limit(caller, route.category)
        state.stats.operations[route.operation_id] += 1
        response = await handler(request, state, caller)
        response.headers.update(headers)
        return response

    return endpoint


# -- OAuth -------------------------------------------------------------------------


async def _authorize(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    q = request.query
    client_id = q.get("client_id") or q.get("consumer_id")
    redirect_uri = q.get("redirect_uri")
    if not client_id or not redirect_uri:
        raise bad_request("client_id and redirect_uri are required.")
    if q.get("response_type") != "code":
        raise bad_request("response_type must be 'code'.")
    answer: dict[str, str] = {}
    if q.get("emulator_deny"):
        answer["error"] = "access_denied"
    else:
        answer["code"] = state.authorize(
            client_id, redirect_uri, q.get("scope", ""), q.get("emulator_user")
        )
    if "state" in q:
        answer["state"] = q["state"]
    separator = "&" if "?" in redirect_uri else "?"
    raise web.HTTPFound(f"{redirect_uri}{separator}{urlencode(answer)}")


def _basic_auth(header: str | None) -> tuple[str, str]:
    if not header or not header.startswith("Basic "):
        raise OAuthError(401, "invalid_client", "Authentication failed.")
    try:
        decoded = base64.b64decode(header[len("Basic ") :].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise OAuthError(401, "invalid_client", "Authentication failed.") from exc
    client_id, sep, secret = decoded.partition(":")
    if not sep or not client_id:
        raise OAuthError(401, "invalid_client", "Authentication failed.")
    return client_id, secret


async def _token(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state.stats.operations["oauth/token"] += 1
    client_id, secret = _basic_auth(request.headers.get("Authorization"))
    state.check_client(client_id, secret)
    if request.content_type != "application/x-www-form-urlencoded":
        raise OAuthError(400, "invalid_request", "The body must be form-encoded.")
    form = await request.post()
    grant = form.get("grant_type")

    def field(name: str) -> str:
        value = form.get(name)
        if not isinstance(value, str) or not value:
            raise OAuthError(400, "invalid_request", f"{name} is required.")
        return value

    if grant == "authorization_code":
        answer = state.exchange_code(client_id, field("code"), field("redirect_uri"))
    elif grant == "refresh_token":
        scope = form.get("scope")
        answer = state.refresh(
            client_id, field("refresh_token"), scope if isinstance(scope, str) else None
        )
    else:
        raise OAuthError(400, "unsupported_grant_type", "Unsupported grant_type.")
    return _json(answer)


# -- the media store (stands in for S3) ------------------------------------------------


def _s3_error(status: int, code: str, message: str) -> web.Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message></Error>"
    )
    return web.Response(status=status, text=body, content_type="application/xml")


async def _media_upload(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    if "Authorization" in request.headers:
        # S3 refuses a POST-policy upload that also carries an Authorization header; it
        # also means a Pinterest token leaked to the media store.
        return _s3_error(
            400, "InvalidArgument", "Only one auth mechanism allowed; no Authorization header."
        )
    if request.content_type != "multipart/form-data":
        return _s3_error(400, "InvalidArgument", "The body must be multipart/form-data.")
    reader = await request.multipart()
    fields: list[tuple[str, str]] = []
    data: bytes | None = None
    async for part in reader:
        if not isinstance(part, BodyPartReader) or not part.name:
            return _s3_error(400, "MalformedPOSTRequest", "Unexpected multipart part.")
        if data is not None:
            return _s3_error(400, "InvalidArgument", "The file must be the last field of the form.")
        if part.name == "file":
            data = bytes(await part.read())
        else:
            fields.append((part.name, await part.text()))
    if data is None:
        return _s3_error(400, "InvalidArgument", "POST requires exactly one file upload.")
    try:
        state.accept_upload(request.match_info["media_id"], fields, data)
    except UploadRejected as exc:
        return _s3_error(exc.status, exc.code, exc.message)
    return web.Response(status=204)


# -- admin API ---------------------------------------------------------------------

_M = TypeVar("_M", bound=BaseModel)


async def _admin_body(request: web.Request, model: type[_M]) -> _M:
    try:
        raw = await request.json() if request.can_read_body else {}
        return model.model_validate(raw)
    except (ValueError, ValidationError) as exc:
        raise ApiError(400, 400, f"Invalid admin request: {exc}") from exc


class _UserRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: str | None = None
    username: str | None = None

    def find(self, state: EmulatorState) -> str | None:
        if self.user_id is None and self.username is None:
            return None
        try:
            return state.find_user(self.user_id, self.username).id
        except KeyError as exc:
            raise ApiError(404, 404, "No such emulator user.") from exc


class _MintToken(_UserRef):
    scopes: list[str] = Field(default_factory=lambda: list(ALL_SCOPES))
    client_id: str = "emulator"


class _Revoke(_UserRef):
    token: str | None = None
    client_id: str | None = None


class _AddBoards(BaseModel):
    model_config = ConfigDict(extra="forbid")
    count: int = Field(default=0, ge=0, le=100_000)
    name_prefix: str = "Board"
    boards: list[SeedBoard] = Field(default_factory=list)


class _Advance(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: float


class _Patch(BaseModel):
    model_config = ConfigDict(extra="allow")


def _user_brief(state: EmulatorState, user_id: str) -> dict[str, Any]:
    return state.user_json(state.users[user_id])


async def _admin_health(request: web.Request) -> web.Response:
    return _json({"ok": True, "now": format_time(request.app[STATE].clock.now())})


async def _admin_reset(request: web.Request) -> web.Response:
    request.app[STATE].reset()
    return _json({"ok": True})


async def _admin_clock(request: web.Request) -> web.Response:
    return _json({"now": format_time(request.app[STATE].clock.now())})


async def _admin_clock_advance(request: web.Request) -> web.Response:
    body = await _admin_body(request, _Advance)
    state = request.app[STATE]
    state.clock.advance(body.seconds)
    return _json({"now": format_time(state.clock.now())})


async def _admin_users(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return _json({"items": [state.user_json(u) for u in state.users.values()]})


async def _admin_create_user(request: web.Request) -> web.Response:
    body = await _admin_body(request, SeedUser)
    state = request.app[STATE]
    try:
        user = state.add_user(body)
    except ValueError as exc:
        raise ApiError(409, 409, str(exc)) from exc
    return _json(state.user_json(user), 201)


async def _admin_add_boards(request: web.Request) -> web.Response:
    body = await _admin_body(request, _AddBoards)
    state = request.app[STATE]
    user = state.users.get(request.match_info["user_id"])
    if user is None:
        raise ApiError(404, 404, "No such emulator user.")
    try:
        made = state.add_boards(user, body.boards) + state.generate_boards(
            user, body.count, body.name_prefix
        )
    except ValueError as exc:
        raise ApiError(409, 409, str(exc)) from exc
    return _json({"created": len(made), "board_ids": [b.id for b in made]}, 201)


async def _admin_create_app(request: web.Request) -> web.Response:
    body = await _admin_body(request, SeedApp)
    request.app[STATE].add_app(body)
    return _json({"client_id": body.client_id}, 201)


async def _admin_session(request: web.Request) -> web.Response:
    body = await _admin_body(request, _UserRef)
    state = request.app[STATE]
    state.logged_in = body.find(state)
    return _json({"user_id": state.logged_in})


async def _admin_mint_token(request: web.Request) -> web.Response:
    body = await _admin_body(request, _MintToken)
    state = request.app[STATE]
    user_id = body.find(state)
    if user_id is None:
        raise ApiError(400, 400, "Give user_id or username.")
    access, refresh = state.mint_tokens(user_id, body.client_id, frozenset(body.scopes))
    return _json(state.token_answer(access, refresh, "authorization_code"), 201)


async def _admin_revoke(request: web.Request) -> web.Response:
    body = await _admin_body(request, _Revoke)
    state = request.app[STATE]
    user_id = body.find(state)
    if user_id is None and body.token is None and body.client_id is None:
        raise ApiError(400, 400, "Give token, user_id, username or client_id.")
    return _json(
        {"revoked": state.revoke(token=body.token, user_id=user_id, client_id=body.client_id)}
    )


async def _admin_expire(request: web.Request) -> web.Response:
    body = await _admin_body(request, _Revoke)
    state = request.app[STATE]
    user_id = body.find(state)
    if user_id is None and body.token is None:
        raise ApiError(400, 400, "Give token, user_id or username.")
    return _json({"expired": state.expire(token=body.token, user_id=user_id)})


def _settings(
    getter: Callable[[EmulatorState], BaseModel],
    setter: Callable[[EmulatorState, Mapping[str, Any]], BaseModel],
) -> tuple[
    Callable[[web.Request], Awaitable[web.Response]],
    Callable[[web.Request], Awaitable[web.Response]],
]:
    async def get(request: web.Request) -> web.Response:
        return _json(getter(request.app[STATE]).model_dump())

    async def put(request: web.Request) -> web.Response:
        body = await _admin_body(request, _Patch)
        try:
            updated = setter(request.app[STATE], body.model_dump())
        except ValidationError as exc:
            raise ApiError(400, 400, f"Invalid settings: {exc}") from exc
        return _json(updated.model_dump())

    return get, put


async def _admin_faults(request: web.Request) -> web.Response:
    return _json({"items": request.app[STATE].faults.as_json()})


async def _admin_add_fault(request: web.Request) -> web.Response:
    rule = await _admin_body(request, FaultRule)
    try:
        fault = request.app[STATE].faults.add(rule)
    except ValueError as exc:  # a bad path regex
        raise ApiError(400, 400, f"Invalid fault: {exc}") from exc
    return _json(fault.as_json(), 201)


async def _admin_clear_faults(request: web.Request) -> web.Response:
    request.app[STATE].faults.clear()
    return web.Response(status=204)


async def _admin_delete_fault(request: web.Request) -> web.Response:
    try:
        fault_id = int(request.match_info["fault_id"])
    except ValueError as exc:
        raise ApiError(404, 404, "No such fault.") from exc
    if not request.app[STATE].faults.remove(fault_id):
        raise ApiError(404, 404, "No such fault.")
    return web.Response(status=204)


async def _admin_stats(request: web.Request) -> web.Response:
    return _json(request.app[STATE].stats.as_json())


async def _admin_pins(request: web.Request) -> web.Response:
    state = request.app[STATE]
    q = request.query
    user_id = _UserRef(user_id=q.get("user_id"), username=q.get("username")).find(state)
    board_id = q.get("board_id")
    items = [
        {
            "id": p.id,
            "user_id": p.owner_id,
            "board_id": p.board_id,
            "board_section_id": p.section_id,
            "title": p.title,
            "link": p.link,
            "creative_type": p.creative_type,
            "created_at": format_time(p.created_at),
        }
        for p in state.pins.values()
        if (user_id is None or p.owner_id == user_id)
        and (board_id is None or p.board_id == board_id)
    ]
    return _json({"count": len(items), "items": items})


# -- middlewares -------------------------------------------------------------------


def _is_admin(path: str) -> bool:
    return path.startswith("/_emulator/") and not path.startswith("/_emulator/media-upload/")


def _drop_connection(request: web.Request) -> web.Response:
    transport = request.transport
    if transport is not None:
        transport.abort()
    return web.Response(status=504)  # never delivered: the connection is gone


async def _hang(request: web.Request, seconds: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        transport = request.transport
        if transport is None or transport.is_closing():
            return  # the client gave up already
        await asyncio.sleep(min(0.02, max(0.0, deadline - loop.time())))


@web.middleware
async def _errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    pinterest = request.path.startswith("/v5")
    try:
        response = await handler(request)
    except ApiError as exc:
        response = web.json_response(exc.body(), status=exc.status, headers=exc.headers)
    except web.HTTPNotFound:
        if not (pinterest or _is_admin(request.path)):
            raise
        response = web.json_response({"code": 404, "message": "Not found."}, status=404)
    except web.HTTPMethodNotAllowed:
        if not (pinterest or _is_admin(request.path)):
            raise
        response = web.json_response({"code": 405, "message": "Method not allowed."}, status=405)
    if pinterest and not response.prepared:
        response.headers["x-pinterest-rid"] = secrets.token_hex(8)
    return response


@web.middleware
async def _faults(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    if _is_admin(request.path):
        return await handler(request)
    state = request.app[STATE]
    plan = state.faults.plan(request.method, request.path)
    if plan.latency:
        await asyncio.sleep(plan.latency)
    fault = plan.action
    if fault is None:
        return await handler(request)
    rule = fault.rule
    _log.debug("fault injected: %s %s %s", rule.kind, request.method, request.path)
    if rule.kind == "error":
        raise ApiError(
            rule.status,
            rule.code if rule.code is not None else rule.status,
            rule.message or "Injected failure.",
        )
    if rule.kind == "rate_limit":
        try:
            user: str | None = state.authenticate(request.headers.get("Authorization")).user.id
        except ApiError:
            user = None
        raise state.forced_rate_limit(user, "injected")
    if rule.kind == "timeout":
        await request.read()  # the request arrived whole; only the answer is lost
    else:  # ambiguous
        # A refused write changed nothing; either way the client learns nothing.
        with contextlib.suppress(ApiError):
            await handler(request)
    await _hang(request, rule.seconds)
    return _drop_connection(request)


def create_app(
    config: EmulatorConfig | None = None, *, middlewares: Sequence[Middleware] = ()
) -> web.Application:
    """Build the emulator application; all its state lives in ``app[STATE]``.

    ``middlewares`` run outside the emulator's own (e.g. a test's contract recorder).
    """
    app = web.Application(middlewares=[*middlewares, _errors, _faults])
    app[STATE] = EmulatorState(config or EmulatorConfig())
    for route in ROUTES:
        app.router.add_route(
            route.method, "/v5" + route.path, _api(route, _HANDLERS[route.operation_id])
        )
    app.router.add_post("/v5/oauth/token", _token)
    app.router.add_get("/oauth/", _authorize)
    app.router.add_post("/_emulator/media-upload/{media_id}", _media_upload)

    get_tl, put_tl = _settings(
        lambda s: s.token_lifetimes, lambda s, patch: s.set_token_lifetimes(patch)
    )
    get_rl, put_rl = _settings(lambda s: s.rate_limits, lambda s, patch: s.set_rate_limits(patch))
    get_mp, put_mp = _settings(
        lambda s: s.media_processing, lambda s, patch: s.set_media_processing(patch)
    )
    admin = [
        ("GET", "/health", _admin_health),
        ("POST", "/reset", _admin_reset),
        ("GET", "/clock", _admin_clock),
        ("POST", "/clock/advance", _admin_clock_advance),
        ("GET", "/users", _admin_users),
        ("POST", "/users", _admin_create_user),
        ("POST", "/users/{user_id}/boards", _admin_add_boards),
        ("POST", "/apps", _admin_create_app),
        ("PUT", "/session", _admin_session),
        ("POST", "/tokens", _admin_mint_token),
        ("POST", "/tokens/revoke", _admin_revoke),
        ("POST", "/tokens/expire", _admin_expire),
        ("GET", "/token-lifetimes", get_tl),
        ("PUT", "/token-lifetimes", put_tl),
        ("GET", "/rate-limits", get_rl),
        ("PUT", "/rate-limits", put_rl),
        ("GET", "/media-processing", get_mp),
        ("PUT", "/media-processing", put_mp),
        ("GET", "/faults", _admin_faults),
        ("POST", "/faults", _admin_add_fault),
        ("DELETE", "/faults", _admin_clear_faults),
        ("DELETE", "/faults/{fault_id}", _admin_delete_fault),
        ("GET", "/stats", _admin_stats),
        ("GET", "/pins", _admin_pins),
    ]
    for method, path, handler in admin:
        app.router.add_route(method, "/_emulator" + path, handler)
    return app
