"""Pure rules of the auth service: OAuth state, token schedule, encryption, error classes."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from codiv_common import signed
from codiv_common.crypto import DecryptionError, KeyRing
from codiv_pinterest.errors import PinterestError, TokenRefused

# ---------------------------------------------------------------- errors


class AuthError(Exception):
    """Base of the auth service's domain errors; ``code`` is machine readable."""

    code = "auth_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class StateRejected(AuthError):
    """The OAuth ``state`` is malformed, tampered with, expired or already used."""

    code = "invalid_state"

    def __init__(self, reason: str) -> None:
        super().__init__(f"OAuth state {reason}")
        self.reason = reason


class ConnectFailed(AuthError):
    """The connection could not be completed (the code was refused, Pinterest is down...)."""

    def __init__(self, code: str, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class AccountConflict(AuthError):
    """This Pinterest user is already connected to another profile of the workspace."""

    code = "account_in_use"

    def __init__(self, username: str | None, other_profile_name: str) -> None:
        who = f"@{username}" if username else "This Pinterest account"
        super().__init__(
            f"{who} is already connected to the profile {other_profile_name!r} of this "
            "workspace. Disconnect it there first, or connect it from that profile."
        )
        self.other_profile_name = other_profile_name


class AccountNotFound(AuthError):
    code = "account_not_found"

    def __init__(self, account_id: str) -> None:
        super().__init__(f"no connected Pinterest account {account_id}")


class NeedsReauth(AuthError):
    """Pinterest refused the account's refresh token: the customer must reconnect."""

    code = "needs_reauth"

    def __init__(self, account_id: str, reason: str) -> None:
        super().__init__(
            "Pinterest no longer accepts this account's authorization: reconnect this "
            f"Pinterest account ({reason})"
        )
        self.account_id = account_id
        self.reason = reason


class RefreshUnavailable(AuthError):
    """No valid access token right now (refresh failed transiently); try again later."""

    code = "refresh_unavailable"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TokenDecryptionFailed(AuthError):
    """A stored token does not decrypt with the configured key ring (wrong or missing key)."""

    code = "token_decryption_failed"


# ---------------------------------------------------------------- OAuth state


@dataclass(frozen=True)
class OAuthState:
    """The claims of a verified OAuth ``state`` (signed by the gateway)."""

    workspace_id: uuid.UUID
    profile_id: uuid.UUID
    profile_name: str
    nonce: str
    expires_at: dt.datetime


def parse_state(secret: bytes, token: str | None, now: float | None = None) -> OAuthState:
    """Verify signature and expiry of ``token`` and read its claims.

    Single use is not checked here: the caller records the nonce once.
    """
    if not token or len(token) > 4096:
        raise StateRejected("is missing" if not token else "is malformed")
    try:
        claims = signed.verify(secret, token, now=now)
    except signed.InvalidSignedToken as exc:
        reason = str(exc)
        raise StateRejected(
            {"expired": "has expired", "bad signature": "was tampered with"}.get(
                reason, "is malformed"
            )
        ) from exc
    try:
        nonce = claims["nonce"]
        profile_name = claims["pname"]
        if not isinstance(nonce, str) or not nonce or len(nonce) > 200:
            raise ValueError("nonce")
        if not isinstance(profile_name, str):
            raise ValueError("pname")
        return OAuthState(
            workspace_id=uuid.UUID(str(claims["ws"])),
            profile_id=uuid.UUID(str(claims["pid"])),
            profile_name=profile_name,
            nonce=nonce,
            expires_at=dt.datetime.fromtimestamp(float(claims["exp"]), dt.UTC),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise StateRejected("is malformed") from exc


def make_state(
    secret: bytes,
    workspace_id: uuid.UUID,
    profile_id: uuid.UUID,
    profile_name: str,
    ttl: float = 600.0,
    now: float | None = None,
) -> str:
    """A state exactly as the gateway signs it (brief's OAuth contract); for tools and tests."""
    claims = {
        "ws": str(workspace_id),
        "pid": str(profile_id),
        "pname": profile_name,
        "nonce": uuid.uuid4().hex,
    }
    return signed.sign(secret, claims, ttl, now=now)


# ---------------------------------------------------------------- token schedule


def refresh_due_at(
    issued_at: dt.datetime,
    expires_in: float,
    ratio: float,
    jitter_ratio: float,
    rng: random.Random | None = None,
) -> dt.datetime:
    """When to refresh a token issued at ``issued_at`` that lives ``expires_in`` seconds.

    At ``ratio`` of its life, minus a random jitter of up to ``jitter_ratio`` of its life
    so that tokens connected together do not all refresh in the same instant; never
    before issue.
    """
    life = max(0.0, float(expires_in))
    jitter = (rng or random).random() * jitter_ratio * life
    return issued_at + dt.timedelta(seconds=max(0.0, life * ratio - jitter))


def retry_delay(failures: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter in [base/2, min(cap, base * 2**(failures-1))]."""
    ceiling = min(cap, base * 2 ** max(0, min(failures - 1, 30)))
    return max(base / 2, (rng or random).uniform(base / 2, ceiling))


class RefreshOutcome(Enum):
    """What a failed refresh means for the account."""

    REFUSED = "refused"  # the grant is dead: needs_reauth until the customer reconnects
    TRANSIENT = "transient"  # network, 5xx, 429: retry with backoff
    OPERATOR = "operator"  # our app's credentials are wrong: retry, alert, never blame the user


def classify_refresh_error(exc: PinterestError) -> RefreshOutcome:
    """Map a failed ``POST /oauth/token`` (refresh grant) to what to do next."""
    if isinstance(exc, TokenRefused):
        if exc.oauth_error == "invalid_client":
            return RefreshOutcome.OPERATOR
        return RefreshOutcome.REFUSED
    if exc.retryable:
        return RefreshOutcome.TRANSIENT
    if exc.status == 401:
        return RefreshOutcome.REFUSED
    # Another 4xx from the token endpoint (e.g. a malformed request): nothing the customer
    # can fix, and retrying slowly costs nothing.
    return RefreshOutcome.OPERATOR


def refusal_reason(exc: PinterestError) -> str:
    """A short, secret-free reason for a refused refresh."""
    if isinstance(exc, TokenRefused) and exc.oauth_error:
        return f"{exc.oauth_error}: {exc.message}"[:300]
    return f"status {exc.status}: {exc.message}"[:300]


# ---------------------------------------------------------------- encryption


class TokenCipher:
    """Encrypts tokens with the key ring, the account id as associated data.

    Binding the ciphertext to the account id means a token copied onto another account's
    row does not decrypt.
    """

    def __init__(self, ring: KeyRing) -> None:
        self.ring = ring

    @property
    def current_key_id(self) -> str:
        return self.ring.current_key_id

    def encrypt(self, account_id: uuid.UUID, token: str) -> bytes:
        return self.ring.encrypt(token, _ad(account_id))

    def decrypt(self, account_id: uuid.UUID, blob: bytes) -> str:
        try:
            return self.ring.decrypt(bytes(blob), _ad(account_id))
        except DecryptionError as exc:
            raise TokenDecryptionFailed(
                f"the token of account {account_id} does not decrypt: {exc}"
            ) from exc


def _ad(account_id: uuid.UUID) -> bytes:
    return str(account_id).encode()


# ---------------------------------------------------------------- boards


def boards_digest(boards: Sequence[dict[str, Any]]) -> str:
    """A stable digest of a board list, to emit ``account.boards_synced`` only on change."""
    canonical = json.dumps(list(boards), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def success_redirect(base_url: str, params: dict[str, str]) -> str:
    """``base_url`` with ``params`` added to its query string."""
    parts = urlsplit(base_url)
    extra = urlencode(params)
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit(parts._replace(query=query))
