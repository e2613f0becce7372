"""Client of the auth service's internal token API, with a per-process token cache."""

from __future__ import annotations

import asyncio
import datetime as dt
import weakref
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
from codiv_common.crypto import sha256_hex
from codiv_common.logging import get_logger
from pydantic import SecretStr

log = get_logger(__name__)


class TokenError(Exception):
    """No usable access token."""


class NeedsReauth(TokenError):
    """The account's grant is dead: the customer must reconnect it (auth answered 409)."""

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason


class TokenStillRefused(NeedsReauth):
    """Auth hands out the very token Pinterest refused, without declaring the grant dead."""


class UnknownAccount(TokenError):
    """Auth does not know the account (404): it was disconnected."""


class AuthUnavailable(TokenError):
    """Auth could not be asked (network, 5xx, refused our service token): retry later."""


@dataclass(frozen=True)
class _Cached:
    token: str
    expires_at: dt.datetime


class AuthTokenClient:
    """``GET/POST {AUTH_URL}/internal/v1/accounts/{id}/access-token[:invalidate]``.

    Tokens are cached until ``margin`` seconds before their ``expires_at``. One fetch
    per account runs at a time, so a burst of posts for one account asks auth once,
    and a burst of 401s invalidates once.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        service_token: SecretStr,
        *,
        margin: float = 120.0,
        timeout: float = 10.0,
    ) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self._service_token = service_token
        self._margin = dt.timedelta(seconds=margin)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._cache: dict[str, _Cached] = {}
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def _lock(self, account_id: str) -> asyncio.Lock:
        lock = self._locks.get(account_id)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[account_id] = lock
        return lock

    def _fresh(self, account_id: str) -> str | None:
        cached = self._cache.get(account_id)
        if cached is None:
            return None
        if cached.expires_at - self._margin <= dt.datetime.now(dt.UTC):
            self._cache.pop(account_id, None)
            return None
        return cached.token

    async def get(self, account_id: str) -> str:
        """A valid access token for the account (from the cache when fresh)."""
        token = self._fresh(account_id)
        if token is not None:
            return token
        lock = self._lock(account_id)
        async with lock:
            token = self._fresh(account_id)
            if token is not None:
                return token
            return await self._request("GET", account_id, "")

    async def invalidate(self, account_id: str, rejected_token: str) -> str:
        """Pinterest refused ``rejected_token``: have auth replace it, return the new one."""
        lock = self._lock(account_id)
        async with lock:
            cached = self._fresh(account_id)
            if cached is not None and cached != rejected_token:
                return cached  # another task already replaced it
            self._cache.pop(account_id, None)
            token = await self._request(
                "POST",
                account_id,
                ":invalidate",
                {"rejected_token_sha256": sha256_hex(rejected_token)},
            )
            if token == rejected_token:
                # Auth refreshed on the refused token's hash and still hands it out:
                # nothing better exists.
                raise TokenStillRefused("auth returned the token Pinterest refused")
            return token

    async def _request(
        self, method: str, account_id: str, suffix: str, body_json: dict[str, str] | None = None
    ) -> str:
        url = f"{self._base}/internal/v1/accounts/{quote(account_id, safe='')}/access-token{suffix}"
        headers = {"Authorization": f"Bearer {self._service_token.get_secret_value()}"}
        try:
            async with self._session.request(
                method, url, headers=headers, json=body_json, timeout=self._timeout
            ) as resp:
                status = resp.status
                body: Any = None
                if resp.content_type.endswith("json"):
                    body = await resp.json()
                else:
                    await resp.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise AuthUnavailable(f"auth service unreachable: {type(exc).__name__}") from exc
        except ValueError as exc:
            raise AuthUnavailable("auth service answered invalid JSON") from exc
        detail = body.get("detail") or body.get("message") if isinstance(body, dict) else None
        if status == 409:
            reason = body.get("reason") if isinstance(body, dict) else None
            raise NeedsReauth(
                str(detail or "account needs reauthorization"), str(reason) if reason else None
            )
        if status == 404:
            raise UnknownAccount(str(detail or "unknown account"))
        if status in (200, 201) and isinstance(body, dict) and body.get("access_token"):
            token = str(body["access_token"])
            expires_at = _parse_time(body.get("expires_at"))
            if expires_at is not None:
                self._cache[account_id] = _Cached(token, expires_at)
            return token
        if 200 <= status < 300 and suffix:
            # Invalidated without handing out a token: ask for one.
            return await self._request("GET", account_id, "")
        log.warning("auth_token_request_failed", status=status, method=method)
        raise AuthUnavailable(f"auth service answered {status}")


def _parse_time(value: object) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed
