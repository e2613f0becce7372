"""Async client for Pinterest API v5 over one shared aiohttp session."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import email.utils
import json
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import urlencode

import aiohttp
import structlog
from pydantic import BaseModel

from codiv_pinterest.errors import (
    BoardNotFound,
    Conflict,
    Forbidden,
    InvalidRequest,
    InvalidResponse,
    MediaNotFound,
    MediaRejected,
    MediaUploadFailed,
    NotFound,
    PinNotFound,
    PinterestError,
    PinterestTransportError,
    RateLimited,
    SectionNotFound,
    ServerError,
    TokenRefused,
    TrialAccessRestricted,
    Unauthorized,
)
from codiv_pinterest.models import (
    AccountAnalytics,
    Board,
    BoardSection,
    MediaStatus,
    MediaUpload,
    Pin,
    PinAnalytics,
    PinCreate,
    TokenResponse,
    UserAccount,
)

__all__ = [
    "ANALYTICS_MAX_DAYS",
    "PRODUCTION_API_URL",
    "PRODUCTION_OAUTH_URL",
    "SANDBOX_API_URL",
    "PinterestClient",
    "build_authorize_url",
    "clamp_analytics_range",
]

PRODUCTION_API_URL: Final = "https://api.pinterest.com/v5"
SANDBOX_API_URL: Final = "https://api-sandbox.pinterest.com/v5"
PRODUCTION_OAUTH_URL: Final = "https://www.pinterest.com/oauth/"

# Pinterest allows 90 days back and a 90-day span, in UTC; one day less keeps clear of
# timezone off-by-one refusals ("You can only get data from the last 90 days.").
ANALYTICS_MAX_DAYS: Final = 89

_M = TypeVar("_M", bound=BaseModel)

_CODE_CLASSES: Final[Mapping[int, type[NotFound]]] = {
    40: BoardNotFound,
    2031: SectionNotFound,
    50: PinNotFound,
}


def build_authorize_url(
    oauth_url: str, client_id: str, redirect_uri: str, scopes: Sequence[str], state: str
) -> str:
    """The URL to send a user to for consent; scopes are comma-joined as Pinterest expects."""
    query = urlencode(
        {
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "response_type": "code",
            "scope": ",".join(scopes),
            "state": state,
        }
    )
    return f"{oauth_url}{'&' if '?' in oauth_url else '?'}{query}"


def clamp_analytics_range(
    start_date: dt.date, end_date: dt.date, today: dt.date
) -> tuple[dt.date, dt.date]:
    """Fit a date range into the window Pinterest serves (the last 89 days, up to today).

    Raises ``ValueError`` when nothing of the range is left.
    """
    end = min(end_date, today)
    start = max(start_date, today - dt.timedelta(days=ANALYTICS_MAX_DAYS))
    start = max(start, end - dt.timedelta(days=ANALYTICS_MAX_DAYS))
    if start > end:
        raise ValueError(f"no analytics available between {start_date} and {end_date}")
    return start, end


def _retry_after(headers: Mapping[str, str]) -> float | None:
    # Pinterest v5 documents no rate-limit headers; honour them when they appear.
    raw = headers.get("Retry-After")
    if raw is not None:
        raw = raw.strip()
        try:
            return max(0.0, float(raw))
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(raw) if raw else None
            if parsed is not None:
                if parsed.tzinfo is None:
                    parsed = parsed.replace(tzinfo=dt.UTC)
                return max(0.0, (parsed - dt.datetime.now(dt.UTC)).total_seconds())
    reset = headers.get("X-RateLimit-Reset")
    if reset is not None:
        try:
            return max(0.0, float(reset))
        except ValueError:
            return None
    return None


def _error_body(body: bytes) -> tuple[int | None, str, str | None]:
    try:
        data = json.loads(body)
    except ValueError:
        return None, body[:200].decode("utf-8", "replace"), None
    if not isinstance(data, dict):
        return None, str(data)[:200], None
    code = data.get("code")
    message = data.get("message") or data.get("error_description") or data.get("error") or ""
    oauth_error = data.get("error")
    return (
        code if isinstance(code, int) else None,
        str(message),
        oauth_error if isinstance(oauth_error, str) else None,
    )


def _error_for(
    status: int,
    body: bytes,
    headers: Mapping[str, str],
    *,
    not_found: type[NotFound],
    token_endpoint: bool,
) -> PinterestError:
    code, message, oauth_error = _error_body(body)
    rid = headers.get("x-pinterest-rid")
    if status == 429 or code == 8:
        return RateLimited(status, code, message, rid, retry_after=_retry_after(headers))
    if token_endpoint and 400 <= status < 500:
        return TokenRefused(status, code, message, rid, oauth_error=oauth_error)
    if code == 29:
        return TrialAccessRestricted(status, code, message, rid)
    if status == 401:
        return Unauthorized(status, code, message, rid)
    if status == 403:
        if code in (233, 235):
            return MediaRejected(status, code, message, rid)
        return Forbidden(status, code, message, rid)
    if status == 404:
        cls = _CODE_CLASSES.get(code, not_found) if code is not None else not_found
        return cls(status, code, message, rid)
    if status == 409:
        return Conflict(status, code, message, rid)
    if 400 <= status < 500:
        return InvalidRequest(status, code, message, rid)
    return ServerError(status, code, message, rid)


class PinterestClient:
    """Pinterest API v5 over a caller-owned ``aiohttp.ClientSession``.

    ``api_base_url`` is e.g. ``https://api.pinterest.com/v5``, the sandbox, or an emulator
    (``http://127.0.0.1:PORT/v5``). Methods take the user's access token first, return
    frozen models and raise :mod:`codiv_pinterest.errors` types. The client never retries:
    callers schedule retries using ``error.retryable`` / ``RateLimited.retry_after``.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        api_base_url: str,
        *,
        timeout: float = 30.0,
        upload_timeout: float = 600.0,
    ) -> None:
        self._session = session
        self._base = api_base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._upload_timeout = aiohttp.ClientTimeout(total=upload_timeout)
        self._log = structlog.get_logger("codiv_pinterest.client")

    # -- plumbing -----------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        basic: tuple[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        json_body: Mapping[str, Any] | None = None,
        form: Mapping[str, str] | None = None,
        not_found: type[NotFound] = NotFound,
        token_endpoint: bool = False,
    ) -> Any:
        headers = {"Accept": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        elif basic is not None:
            pair = f"{basic[0]}:{basic[1]}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        write = method != "GET"
        try:
            async with self._session.request(
                method,
                self._base + path,
                headers=headers,
                params=params,
                json=json_body,
                data=form,
                timeout=self._timeout,
            ) as resp:
                status = resp.status
                resp_headers = resp.headers
                body = await resp.read()
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            # The request never left: nothing can have been applied.
            raise self._transport_error(method, path, exc, outcome_unknown=False) from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise self._transport_error(method, path, exc, outcome_unknown=write) from exc
        if status >= 400:
            error = _error_for(
                status, body, resp_headers, not_found=not_found, token_endpoint=token_endpoint
            )
            self._log.warning(
                "pinterest_error",
                method=method,
                path=path,
                status=status,
                code=error.code,
                message=error.message,
                request_id=error.request_id,
                error_type=type(error).__name__,
            )
            raise error
        if status == 204 or not body:
            return None
        try:
            return json.loads(body)
        except ValueError as exc:
            rid = resp_headers.get("x-pinterest-rid")
            self._log.warning(
                "pinterest_invalid_response", method=method, path=path, request_id=rid
            )
            raise InvalidResponse(status, None, "response is not JSON", rid) from exc

    def _transport_error(
        self, method: str, path: str, exc: BaseException, *, outcome_unknown: bool
    ) -> PinterestTransportError:
        self._log.warning(
            "pinterest_transport_error",
            method=method,
            path=path,
            error_type=type(exc).__name__,
            outcome_unknown=outcome_unknown,
        )
        reason = str(exc) or type(exc).__name__
        return PinterestTransportError(
            f"{method} {path}: {reason}", outcome_unknown=outcome_unknown
        )

    async def _pages(
        self,
        token: str,
        path: str,
        params: Mapping[str, str],
        *,
        not_found: type[NotFound] = NotFound,
    ) -> AsyncIterator[dict[str, Any]]:
        bookmark: str | None = None
        seen: set[str] = set()
        while True:
            query = dict(params)
            if bookmark:
                query["bookmark"] = bookmark
            page = await self._call("GET", path, token=token, params=query, not_found=not_found)
            for item in page.get("items") or []:
                yield item
            bookmark = page.get("bookmark")
            if not bookmark:
                return
            if bookmark in seen:
                raise InvalidResponse(200, None, f"bookmark repeated while paging {path}")
            seen.add(bookmark)

    @staticmethod
    def _parse(model: type[_M], data: Any) -> _M:
        try:
            return model.model_validate(data)
        except ValueError as exc:
            raise InvalidResponse(200, None, f"unexpected {model.__name__}: {exc}") from exc

    # -- OAuth --------------------------------------------------------------------

    async def exchange_code(
        self, client_id: str, client_secret: str, code: str, redirect_uri: str
    ) -> TokenResponse:
        """Trade an authorization code for tokens (continuous refresh requested)."""
        data = await self._call(
            "POST",
            "/oauth/token",
            basic=(client_id, client_secret),
            form={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "continuous_refresh": "true",
            },
            token_endpoint=True,
        )
        return self._parse(TokenResponse, data)

    async def refresh_token(
        self,
        client_id: str,
        client_secret: str,
        refresh_token: str,
        *,
        scopes: Sequence[str] | None = None,
    ) -> TokenResponse:
        """New tokens from a refresh token. The answer carries a NEW refresh token: keep it;
        the old one is spent. A refusal raises :class:`TokenRefused`."""
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        if scopes:
            form["scope"] = ",".join(scopes)
        data = await self._call(
            "POST",
            "/oauth/token",
            basic=(client_id, client_secret),
            form=form,
            token_endpoint=True,
        )
        return self._parse(TokenResponse, data)

    # -- account and boards -------------------------------------------------------

    async def get_user_account(self, access_token: str) -> UserAccount:
        return self._parse(
            UserAccount, await self._call("GET", "/user_account", token=access_token)
        )

    async def iter_boards(
        self, access_token: str, *, page_size: int = 250, privacy: str | None = None
    ) -> AsyncIterator[Board]:
        params = {"page_size": str(page_size)}
        if privacy is not None:
            params["privacy"] = privacy
        async for item in self._pages(access_token, "/boards", params):
            yield self._parse(Board, item)

    async def list_boards(
        self, access_token: str, page_size: int = 250, *, privacy: str | None = None
    ) -> list[Board]:
        """Every board of the user, following bookmarks until Pinterest returns none."""
        return [
            b async for b in self.iter_boards(access_token, page_size=page_size, privacy=privacy)
        ]

    async def get_board(self, access_token: str, board_id: str) -> Board:
        data = await self._call(
            "GET", f"/boards/{board_id}", token=access_token, not_found=BoardNotFound
        )
        return self._parse(Board, data)

    async def create_board(
        self,
        access_token: str,
        name: str,
        *,
        description: str | None = None,
        privacy: str = "PUBLIC",
    ) -> Board:
        body: dict[str, Any] = {"name": name, "privacy": privacy}
        if description is not None:
            body["description"] = description
        return self._parse(
            Board, await self._call("POST", "/boards", token=access_token, json_body=body)
        )

    async def list_board_sections(
        self, access_token: str, board_id: str, *, page_size: int = 250
    ) -> list[BoardSection]:
        return [
            self._parse(BoardSection, item)
            async for item in self._pages(
                access_token,
                f"/boards/{board_id}/sections",
                {"page_size": str(page_size)},
                not_found=BoardNotFound,
            )
        ]

    async def create_board_section(
        self, access_token: str, board_id: str, name: str
    ) -> BoardSection:
        data = await self._call(
            "POST",
            f"/boards/{board_id}/sections",
            token=access_token,
            json_body={"name": name},
            not_found=BoardNotFound,
        )
        return self._parse(BoardSection, data)

    async def iter_board_pins(
        self, access_token: str, board_id: str, *, page_size: int = 250
    ) -> AsyncIterator[Pin]:
        """Pins on a board, newest first, page by page."""
        async for item in self._pages(
            access_token,
            f"/boards/{board_id}/pins",
            {"page_size": str(page_size)},
            not_found=BoardNotFound,
        ):
            yield self._parse(Pin, item)

    async def list_board_pins(
        self, access_token: str, board_id: str, *, page_size: int = 250
    ) -> list[Pin]:
        return [p async for p in self.iter_board_pins(access_token, board_id, page_size=page_size)]

    # -- pins ---------------------------------------------------------------------

    async def create_pin(self, access_token: str, pin: PinCreate) -> Pin:
        """Create a Pin. A :class:`PinterestTransportError` with ``outcome_unknown`` means
        the Pin may exist: reconcile (e.g. :meth:`iter_board_pins`) before retrying."""
        body = pin.model_dump(mode="json", exclude_none=True)
        return self._parse(
            Pin,
            await self._call(
                "POST", "/pins", token=access_token, json_body=body, not_found=BoardNotFound
            ),
        )

    async def get_pin(self, access_token: str, pin_id: str) -> Pin:
        data = await self._call("GET", f"/pins/{pin_id}", token=access_token, not_found=PinNotFound)
        return self._parse(Pin, data)

    async def delete_pin(self, access_token: str, pin_id: str) -> None:
        await self._call("DELETE", f"/pins/{pin_id}", token=access_token, not_found=PinNotFound)

    # -- media --------------------------------------------------------------------

    async def register_media(self, access_token: str) -> MediaUpload:
        """Register a video upload; then :meth:`upload_media`, then poll :meth:`get_media`."""
        data = await self._call(
            "POST", "/media", token=access_token, json_body={"media_type": "video"}
        )
        return self._parse(MediaUpload, data)

    async def upload_media(
        self, registration: MediaUpload, file_path: str | os.PathLike[str]
    ) -> None:
        """POST the file to ``upload_url`` as multipart: every upload parameter, then the
        file last (S3 requires it). No Pinterest credentials are sent there."""
        path = Path(file_path)
        form = aiohttp.FormData()
        for key, value in registration.upload_parameters.items():
            form.add_field(key, value)
        handle = await asyncio.to_thread(path.open, "rb")
        try:
            form.add_field(
                "file", handle, filename=path.name, content_type="application/octet-stream"
            )
            try:
                async with self._session.post(
                    registration.upload_url, data=form, timeout=self._upload_timeout
                ) as resp:
                    status = resp.status
                    body = await resp.read()
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
                raise self._transport_error(
                    "POST", "<upload_url>", exc, outcome_unknown=False
                ) from exc
            except (TimeoutError, aiohttp.ClientError) as exc:
                raise self._transport_error(
                    "POST", "<upload_url>", exc, outcome_unknown=True
                ) from exc
        finally:
            await asyncio.to_thread(handle.close)
        if status >= 300:
            self._log.warning(
                "pinterest_media_upload_failed", status=status, media_id=registration.media_id
            )
            raise MediaUploadFailed(status, None, body[:300].decode("utf-8", "replace"))

    async def get_media(self, access_token: str, media_id: str) -> MediaStatus:
        data = await self._call(
            "GET", f"/media/{media_id}", token=access_token, not_found=MediaNotFound
        )
        return self._parse(MediaStatus, data)

    # -- analytics ----------------------------------------------------------------

    async def get_pin_analytics(
        self,
        access_token: str,
        pin_id: str,
        start_date: dt.date,
        end_date: dt.date,
        metric_types: Sequence[str],
        *,
        today: dt.date | None = None,
    ) -> PinAnalytics:
        """Daily and summary metrics of one Pin; the range is clamped to what Pinterest
        serves (see :func:`clamp_analytics_range`; ``today`` defaults to the UTC date)."""
        if not metric_types:
            raise ValueError("metric_types must not be empty")
        start, end = clamp_analytics_range(start_date, end_date, today or _utc_today())
        data = await self._call(
            "GET",
            f"/pins/{pin_id}/analytics",
            token=access_token,
            params={
                "start_date": start.isoformat(),
                "end_date": end.isoformat(),
                "metric_types": ",".join(metric_types),
            },
            not_found=PinNotFound,
        )
        split = _all_split(data)
        return self._parse(
            PinAnalytics,
            {
                "start_date": start,
                "end_date": end,
                "daily": _daily(split),
                "summary": split.get("summary_metrics") or {},
                "lifetime": split.get("lifetime_metrics") or {},
            },
        )

    async def get_account_analytics(
        self,
        access_token: str,
        start_date: dt.date,
        end_date: dt.date,
        metric_types: Sequence[str] | None = None,
        *,
        today: dt.date | None = None,
    ) -> AccountAnalytics:
        """Daily and summary metrics of the whole account over the clamped range."""
        start, end = clamp_analytics_range(start_date, end_date, today or _utc_today())
        params = {"start_date": start.isoformat(), "end_date": end.isoformat()}
        if metric_types:
            params["metric_types"] = ",".join(metric_types)
        data = await self._call("GET", "/user_account/analytics", token=access_token, params=params)
        split = _all_split(data)
        return self._parse(
            AccountAnalytics,
            {
                "start_date": start,
                "end_date": end,
                "daily": _daily(split),
                "summary": split.get("summary_metrics") or {},
            },
        )


def _utc_today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def _all_split(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict) or not data:
        raise InvalidResponse(200, None, "analytics answer is not a map of splits")
    split = data.get("all")
    if split is None:
        split = next(iter(data.values()))
    if not isinstance(split, dict):
        raise InvalidResponse(200, None, "analytics split is not an object")
    return split


def _daily(split: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = split.get("daily_metrics") or []
    return [
        {
            "date": row.get("date"),
            "data_status": row.get("data_status"),
            "metrics": row.get("metrics") or {},
        }
        for row in rows
        if isinstance(row, dict)
    ]
