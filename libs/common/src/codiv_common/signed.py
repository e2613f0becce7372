"""Signed, expiring tokens (OAuth ``state`` and similar): HMAC-SHA256 over a JSON body."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from .crypto import constant_time_equal, hmac_sha256


class InvalidSignedToken(ValueError):
    """The token is malformed, tampered with, or expired (the message says which)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(
    secret: bytes, claims: dict[str, Any], ttl_seconds: float, now: float | None = None
) -> str:
    """A URL-safe token carrying ``claims`` plus an expiry, signed with ``secret``."""
    issued = time.time() if now is None else now
    body = _b64(json.dumps({**claims, "exp": issued + ttl_seconds}, sort_keys=True).encode())
    return f"{body}.{hmac_sha256(secret, body.encode())}"


def verify(secret: bytes, token: str, now: float | None = None) -> dict[str, Any]:
    """Return the claims of a valid token; raise :class:`InvalidSignedToken` otherwise.

    Single use is the caller's business (record a nonce claim once).
    """
    body, sep, signature = token.partition(".")
    if not sep or not body or not signature:
        raise InvalidSignedToken("malformed")
    if not constant_time_equal(signature, hmac_sha256(secret, body.encode())):
        raise InvalidSignedToken("bad signature")
    try:
        claims: dict[str, Any] = json.loads(_unb64(body))
    except ValueError as exc:
        raise InvalidSignedToken("malformed") from exc
    if not isinstance(claims, dict) or not isinstance(claims.get("exp"), int | float):
        raise InvalidSignedToken("malformed")
    if (time.time() if now is None else now) > claims["exp"]:
        raise InvalidSignedToken("expired")
    return claims
