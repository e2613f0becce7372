"""In-memory state and rules of the Pinterest emulator (no HTTP here)."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import itertools
import math
import random
import secrets
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from codiv_pinterest.emulator import analytics
from codiv_pinterest.emulator.config import (
    ALL_SCOPES,
    EmulatorConfig,
    MediaProcessing,
    RateLimitConfig,
    Seed,
    SeedApp,
    SeedBoard,
    SeedUser,
    TokenLifetimes,
    default_seed,
)
from codiv_pinterest.emulator.faults import FaultBook

__all__ = ["ApiError", "Clock", "EmulatorState", "OAuthError", "format_time"]

MAX_PAGE_SIZE = 250
UPLOAD_WINDOW_SECONDS = 3600


class ApiError(Exception):
    """A Pinterest-style error answer: ``{code, message}`` with an HTTP status."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.extra}


class OAuthError(ApiError):
    def __init__(self, status: int, error: str, description: str) -> None:
        # Pinterest's default error schema needs code and message; OAuth clients look for
        # "error", so both are sent.
        super().__init__(
            status,
            2 if status == 401 else status,
            description,
            extra={"error": error, "error_description": description},
        )


def bad_request(message: str) -> ApiError:
    return ApiError(400, 1, message)


BOARD_NOT_FOUND = (404, 40, "Board not found.")
SECTION_NOT_FOUND = (404, 2031, "Board section not found.")
PIN_NOT_FOUND = (404, 50, "Pin not found.")
AUTH_FAILED = (401, 2, "Authentication failed.")
MISSING_SCOPE = (
    401,
    3,
    "Your token does not have sufficient permissions to perform this operation. "
    "Please ensure your token is authorized with the correct set of scopes.",
)
TRIAL_PINS = (
    403,
    29,
    "Apps with Trial access may not create Pins in production https://api.pinterest.com "
    "- use API Sandbox https://api-sandbox.pinterest.com instead.",
)
RATE_LIMITED = (
    429,
    8,
    "This request exceeded a rate limit. This can happen if the client exceeds one of the "
    "published rate limits or if multiple write operations are applied to an object within "
    "a short time window.",
)


def err(spec: tuple[int, int, str], **kw: Any) -> ApiError:
    return ApiError(*spec, **kw)


def format_time(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Clock:
    """The emulator's "now": real (or configured) time plus an offset the admin API moves."""

    def __init__(self, start: dt.datetime | None) -> None:
        if start is not None and start.tzinfo is None:
            start = start.replace(tzinfo=dt.UTC)
        self._start = start
        self._mono0 = time.monotonic()
        self._offset = 0.0

    def now(self) -> dt.datetime:
        if self._start is None:
            base = dt.datetime.now(dt.UTC)
        else:
            base = self._start + dt.timedelta(seconds=time.monotonic() - self._mono0)
        return base + dt.timedelta(seconds=self._offset)

    def timestamp(self) -> float:
        return self.now().timestamp()

    def advance(self, seconds: float) -> None:
        self._offset += seconds


@dataclass
class User:
    id: str
    username: str
    account_type: str
    about: str
    website_url: str
    business_name: str | None
    follower_count: int
    following_count: int
    monthly_views: int


@dataclass
class App:
    client_id: str
    client_secret: str
    redirect_uris: list[str]
    trial_access: bool


@dataclass
class Board:
    id: str
    owner_id: str
    name: str
    description: str | None
    privacy: str
    created_at: dt.datetime
    pins_modified_at: dt.datetime


@dataclass
class Section:
    id: str
    board_id: str
    name: str


@dataclass
class Pin:
    id: str
    owner_id: str
    board_id: str
    section_id: str | None
    title: str | None
    description: str | None
    link: str | None
    alt_text: str | None
    dominant_color: str | None
    created_at: dt.datetime
    creative_type: str
    media: dict[str, Any]


@dataclass
class Media:
    id: str
    owner_id: str
    registered_at: dt.datetime
    signature: str
    uploaded_at: dt.datetime | None = None
    size: int = 0
    broken: bool = False
    will_fail: bool = False
    processing_seconds: float = 0.0

    def status(self, now: dt.datetime) -> str:
        if self.uploaded_at is None:
            return "registered"
        if now < self.uploaded_at + dt.timedelta(seconds=self.processing_seconds):
            return "processing"
        return "failed" if self.broken or self.will_fail else "succeeded"


@dataclass
class Token:
    value: str
    kind: Literal["access", "refresh"]
    user_id: str
    client_id: str
    scopes: frozenset[str]
    expires_at: dt.datetime
    revoked: bool = False


@dataclass
class AuthCode:
    code: str
    client_id: str
    user_id: str
    redirect_uri: str
    scopes: frozenset[str]
    expires_at: dt.datetime
    used: bool = False


@dataclass
class Caller:
    """The authenticated user and token of a /v5 request."""

    user: User
    token: Token
    app: App | None


@dataclass
class Stats:
    pins_created: Counter[str] = field(default_factory=Counter)  # by user id
    pins_created_by_board: Counter[str] = field(default_factory=Counter)
    pins_deleted: Counter[str] = field(default_factory=Counter)
    token_refreshes: Counter[str] = field(default_factory=Counter)  # by user id
    code_exchanges: Counter[str] = field(default_factory=Counter)
    rate_limited: defaultdict[str, Counter[str]] = field(
        default_factory=lambda: defaultdict(Counter)
    )  # user id -> category -> 429s
    operations: Counter[str] = field(default_factory=Counter)
    media_uploads: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "pins_created": dict(self.pins_created),
            "pins_created_by_board": dict(self.pins_created_by_board),
            "pins_deleted": dict(self.pins_deleted),
            "token_refreshes": dict(self.token_refreshes),
            "code_exchanges": dict(self.code_exchanges),
            "rate_limited": {u: dict(c) for u, c in self.rate_limited.items()},
            "rate_limited_total": sum(sum(c.values()) for c in self.rate_limited.values()),
            "operations": dict(self.operations),
            "media_uploads": self.media_uploads,
        }


def _page(
    items: Sequence[Any], scope: str, bookmark: str | None, page_size: int
) -> tuple[Sequence[Any], str | None]:
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise bad_request(f"page_size must be between 1 and {MAX_PAGE_SIZE}.")
    offset = 0
    if bookmark:
        try:
            raw = base64.urlsafe_b64decode(bookmark.encode()).decode()
            got_scope, _, got_offset = raw.rpartition("|")
            offset = int(got_offset)
        except (ValueError, binascii.Error) as exc:
            raise bad_request("Invalid bookmark.") from exc
        if got_scope != scope or offset < 0:
            raise bad_request("Invalid bookmark.")
    chunk = items[offset : offset + page_size]
    end = offset + len(chunk)
    if end >= len(items):
        return chunk, None
    return chunk, base64.urlsafe_b64encode(f"{scope}|{end}".encode()).decode()


def _valid_url(value: Any) -> bool:
    if not isinstance(value, str) or len(value) > 2048:
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _images(url: str) -> dict[str, Any]:
    sizes = {
        "150x150": (150, 150),
        "400x300": (400, 300),
        "600x": (600, 900),
        "1200x": (1200, 1800),
    }
    return {key: {"width": w, "height": h, "url": url} for key, (w, h) in sizes.items()}


_PIN_FIELDS = frozenset(
    {
        "board_id",
        "board_section_id",
        "title",
        "description",
        "link",
        "alt_text",
        "dominant_color",
        "media_source",
        "parent_pin_id",
        "sponsor_id",
    }
)
_LIMITS = {"title": 100, "description": 800, "link": 2048, "alt_text": 500}


class EmulatorState:
    """Users, apps, tokens, boards, sections, pins, media, limits, faults and counters."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.reset()

    # -- set-up -------------------------------------------------------------------

    def reset(self) -> None:
        config = self.config
        self.clock = Clock(config.start_time)
        self.rng = random.Random(config.random_seed)
        self._ids = itertools.count(1_000_000_000_000_000_001)
        self.secret = secrets.token_bytes(16)
        self.token_lifetimes = config.tokens.model_copy()
        self.rate_limits = config.rate_limits.model_copy(deep=True)
        self.media_processing = config.media.model_copy()
        self.faults = FaultBook(self.rng)
        self.users: dict[str, User] = {}
        self.apps: dict[str, App] = {}
        self.boards: dict[str, Board] = {}
        self.sections: dict[str, Section] = {}
        self.pins: dict[str, Pin] = {}
        self.media: dict[str, Media] = {}
        self.tokens: dict[str, Token] = {}
        self.codes: dict[str, AuthCode] = {}
        self.stats = Stats()
        self._windows: dict[tuple[str, str, str], tuple[int, int]] = {}
        self.logged_in: str | None = None
        seed = config.seed if config.seed is not None else default_seed()
        self.load_seed(seed)

    def load_seed(self, seed: Seed) -> None:
        for seed_user in seed.users:
            self.add_user(seed_user)
        for seed_app in seed.apps:
            self.add_app(seed_app)
        for seed_token in seed.tokens:
            user = self.user_by_name(seed_token.username)
            expires = self.clock.now() + dt.timedelta(
                seconds=self.token_lifetimes.access_token_seconds
            )
            self.tokens[seed_token.access_token] = Token(
                seed_token.access_token,
                "access",
                user.id,
                seed_token.client_id,
                frozenset(seed_token.scopes),
                expires,
            )
            if seed_token.refresh_token:
                self.tokens[seed_token.refresh_token] = Token(
                    seed_token.refresh_token,
                    "refresh",
                    user.id,
                    seed_token.client_id,
                    frozenset(seed_token.scopes),
                    expires + dt.timedelta(seconds=self.token_lifetimes.refresh_token_seconds),
                )
        if seed.logged_in is not None:
            self.logged_in = self.user_by_name(seed.logged_in).id

    def next_id(self) -> str:
        return str(next(self._ids))

    def add_user(self, seed: SeedUser) -> User:
        if any(u.username == seed.username for u in self.users.values()):
            raise ValueError(f"username {seed.username!r} exists")
        user_id = seed.id or self.next_id()
        if user_id in self.users:
            raise ValueError(f"user id {user_id} exists")
        user = User(
            user_id,
            seed.username,
            seed.account_type,
            seed.about,
            seed.website_url,
            seed.business_name,
            seed.follower_count,
            seed.following_count,
            seed.monthly_views,
        )
        self.users[user_id] = user
        self.add_boards(user, seed.boards)
        self.generate_boards(user, seed.generated_boards)
        return user

    def add_boards(self, user: User, boards: Iterable[SeedBoard]) -> list[Board]:
        made = []
        for seed in boards:
            board = self._new_board(user, seed.name, seed.description, seed.privacy, seed.id)
            for name in seed.sections:
                self._new_section(board, name)
            made.append(board)
        return made

    def generate_boards(self, user: User, count: int, prefix: str = "Board") -> list[Board]:
        start = sum(1 for b in self.boards.values() if b.owner_id == user.id)
        return [
            self._new_board(user, f"{prefix} {start + i + 1}", None, "PUBLIC", None)
            for i in range(count)
        ]

    def add_app(self, seed: SeedApp) -> App:
        app = App(seed.client_id, seed.client_secret, list(seed.redirect_uris), seed.trial_access)
        self.apps[app.client_id] = app
        return app

    def _new_board(
        self, user: User, name: str, description: str | None, privacy: str, board_id: str | None
    ) -> Board:
        now = self.clock.now()
        board = Board(board_id or self.next_id(), user.id, name, description, privacy, now, now)
        if board.id in self.boards:
            raise ValueError(f"board id {board.id} exists")
        self.boards[board.id] = board
        return board

    def _new_section(self, board: Board, name: str) -> Section:
        section = Section(self.next_id(), board.id, name)
        self.sections[section.id] = section
        return section

    def user_by_name(self, username: str) -> User:
        for user in self.users.values():
            if user.username == username:
                return user
        raise KeyError(username)

    def find_user(self, user_id: str | None = None, username: str | None = None) -> User:
        if user_id is not None:
            return self.users[user_id]
        if username is not None:
            return self.user_by_name(username)
        raise KeyError("give user_id or username")

    # -- OAuth --------------------------------------------------------------------

    def authorize(
        self,
        client_id: str,
        redirect_uri: str,
        scope: str,
        approver: str | None,
    ) -> str:
        """Approve at once for the chosen user; return the authorization code."""
        if self.apps:
            app = self.apps.get(client_id)
            if app is None:
                raise bad_request("Invalid client_id.")
            if app.redirect_uris and redirect_uri not in app.redirect_uris:
                raise bad_request("redirect_uri does not match a registered redirect URI.")
        scopes = frozenset(s for s in scope.replace(" ", ",").split(",") if s)
        if not scopes:
            raise bad_request("scope is required.")
        if unknown := scopes - set(ALL_SCOPES) - {"user_accounts:write"}:
            raise bad_request(f"Unknown scopes: {', '.join(sorted(unknown))}.")
        if approver is not None:
            try:
                user = self.find_user(
                    user_id=approver if approver.isdigit() else None,
                    username=None if approver.isdigit() else approver,
                )
            except KeyError as exc:
                raise bad_request(f"No such emulator user {approver!r}.") from exc
        elif self.logged_in is not None:
            user = self.users[self.logged_in]
        elif self.users:
            user = next(iter(self.users.values()))
        else:
            raise bad_request("The emulator has no users.")
        code = secrets.token_urlsafe(24)
        self.codes[code] = AuthCode(
            code,
            client_id,
            user.id,
            redirect_uri,
            scopes,
            self.clock.now() + dt.timedelta(seconds=self.token_lifetimes.auth_code_seconds),
        )
        return code

    def check_client(self, client_id: str, client_secret: str) -> None:
        if not self.apps:
            return
        app = self.apps.get(client_id)
        if app is None or not hmac.compare_digest(app.client_secret, client_secret):
            raise OAuthError(401, "invalid_client", "Authentication failed.")

    def mint_tokens(
        self, user_id: str, client_id: str, scopes: frozenset[str]
    ) -> tuple[Token, Token]:
        now = self.clock.now()
        access = Token(
            "pina_" + secrets.token_urlsafe(32),
            "access",
            user_id,
            client_id,
            scopes,
            now + dt.timedelta(seconds=self.token_lifetimes.access_token_seconds),
        )
        refresh = Token(
            "pinr." + secrets.token_urlsafe(32),
            "refresh",
            user_id,
            client_id,
            scopes,
            now + dt.timedelta(seconds=self.token_lifetimes.refresh_token_seconds),
        )
        self.tokens[access.value] = access
        self.tokens[refresh.value] = refresh
        return access, refresh

    def token_answer(self, access: Token, refresh: Token, response_type: str) -> dict[str, Any]:
        now = self.clock.now()
        return {
            "access_token": access.value,
            "token_type": "bearer",
            "expires_in": int((access.expires_at - now).total_seconds()),
            "scope": ",".join(sorted(access.scopes)),
            "refresh_token": refresh.value,
            "refresh_token_expires_in": int((refresh.expires_at - now).total_seconds()),
            "refresh_token_expires_at": int(refresh.expires_at.timestamp()),
            "response_type": response_type,
        }

    def exchange_code(self, client_id: str, code: str, redirect_uri: str) -> dict[str, Any]:
        grant = self.codes.get(code)
        if grant is None or grant.used or grant.client_id != client_id:
            raise OAuthError(400, "invalid_grant", "Invalid authorization code.")
        if grant.expires_at <= self.clock.now():
            raise OAuthError(400, "invalid_grant", "Authorization code expired.")
        if grant.redirect_uri != redirect_uri:
            raise OAuthError(400, "invalid_grant", "redirect_uri does not match.")
        grant.used = True
        self.stats.code_exchanges[grant.user_id] += 1
        access, refresh = self.mint_tokens(grant.user_id, client_id, grant.scopes)
        return self.token_answer(access, refresh, "authorization_code")

    def refresh(self, client_id: str, refresh_token: str, scope: str | None) -> dict[str, Any]:
        old = self.tokens.get(refresh_token)
        if old is None or old.kind != "refresh":
            raise OAuthError(400, "invalid_grant", "Invalid refresh token.")
        self.stats.token_refreshes[old.user_id] += 1
        if old.revoked:
            raise OAuthError(400, "invalid_grant", "Refresh token has been revoked.")
        if old.expires_at <= self.clock.now():
            raise OAuthError(400, "invalid_grant", "Refresh token expired.")
        if old.client_id != client_id:
            raise OAuthError(400, "invalid_grant", "Refresh token was issued to another client.")
        scopes = old.scopes
        if scope:
            wanted = frozenset(s for s in scope.replace(" ", ",").split(",") if s)
            if not wanted <= old.scopes:
                raise OAuthError(400, "invalid_scope", "Requested scope exceeds the grant.")
            scopes = wanted
        # Continuous refresh: the old refresh token is spent, a new one replaces it.
        old.revoked = True
        access, new_refresh = self.mint_tokens(old.user_id, client_id, scopes)
        return self.token_answer(access, new_refresh, "refresh_token")

    def authenticate(self, header: str | None) -> Caller:
        if not header or not header.startswith("Bearer "):
            raise err(AUTH_FAILED)
        token = self.tokens.get(header[len("Bearer ") :].strip())
        if (
            token is None
            or token.kind != "access"
            or token.revoked
            or token.expires_at <= self.clock.now()
            or token.user_id not in self.users
        ):
            raise err(AUTH_FAILED)
        return Caller(self.users[token.user_id], token, self.apps.get(token.client_id))

    def revoke(
        self, *, token: str | None = None, user_id: str | None = None, client_id: str | None = None
    ) -> int:
        count = 0
        for tok in self.tokens.values():
            if tok.revoked:
                continue
            if token is not None and tok.value != token:
                continue
            if user_id is not None and tok.user_id != user_id:
                continue
            if client_id is not None and tok.client_id != client_id:
                continue
            tok.revoked = True
            count += 1
        return count

    def expire(self, *, token: str | None = None, user_id: str | None = None) -> int:
        now = self.clock.now()
        count = 0
        for tok in self.tokens.values():
            if tok.kind != "access":
                continue
            if (token is not None and tok.value == token) or (
                user_id is not None and tok.user_id == user_id
            ):
                tok.expires_at = now
                count += 1
        return count

    # -- rate limits --------------------------------------------------------------

    def check_rate_limit(self, caller: Caller, category: str) -> dict[str, str]:
        """Count one call; raise 429 code 8 when a per-user or per-app limit is spent."""
        config: RateLimitConfig = self.rate_limits
        now = self.clock.timestamp()
        window = int(now // config.window_seconds)
        reset_in = max(1, math.ceil((window + 1) * config.window_seconds - now))
        headers: dict[str, str] = {}
        checks = [("user", caller.user.id, config.per_user.get(category))]
        checks.append(("app", caller.token.client_id, config.per_app.get(category)))
        for kind, key, limit in checks:
            if limit is None:
                continue
            slot = (kind, key, category)
            seen_window, used = self._windows.get(slot, (window, 0))
            if seen_window != window:
                used = 0
            if used >= limit:
                self.stats.rate_limited[caller.user.id][category] += 1
                extra = (
                    {
                        "Retry-After": str(reset_in),
                        "X-RateLimit-Limit": str(limit),
                        "X-RateLimit-Remaining": "0",
                        "X-RateLimit-Reset": str(reset_in),
                    }
                    if config.send_headers
                    else {}
                )
                raise err(RATE_LIMITED, headers=extra)
            self._windows[slot] = (window, used + 1)
            if config.send_headers and kind == "user":
                headers = {
                    "X-RateLimit-Limit": str(limit),
                    "X-RateLimit-Remaining": str(limit - used - 1),
                    "X-RateLimit-Reset": str(reset_in),
                }
        return headers

    def forced_rate_limit(self, caller_user: str | None, category: str) -> ApiError:
        if caller_user is not None:
            self.stats.rate_limited[caller_user][category] += 1
        else:
            self.stats.rate_limited["unknown"][category] += 1
        return err(RATE_LIMITED)

    def set_rate_limits(self, update: Mapping[str, Any]) -> RateLimitConfig:
        merged = self.rate_limits.model_dump() | dict(update)
        self.rate_limits = RateLimitConfig.model_validate(merged)
        self._windows.clear()
        return self.rate_limits

    def set_token_lifetimes(self, update: Mapping[str, Any]) -> TokenLifetimes:
        self.token_lifetimes = TokenLifetimes.model_validate(
            self.token_lifetimes.model_dump() | dict(update)
        )
        return self.token_lifetimes

    def set_media_processing(self, update: Mapping[str, Any]) -> MediaProcessing:
        self.media_processing = MediaProcessing.model_validate(
            self.media_processing.model_dump() | dict(update)
        )
        return self.media_processing

    # -- JSON views ---------------------------------------------------------------

    def user_json(self, user: User) -> dict[str, Any]:
        return {
            "account_type": user.account_type,
            "id": user.id,
            "username": user.username,
            "profile_image": f"https://i.pinimg.com/75x75_RS/{user.id}.jpg",
            "website_url": user.website_url,
            "about": user.about,
            "business_name": user.business_name,
            "board_count": sum(1 for b in self.boards.values() if b.owner_id == user.id),
            "pin_count": sum(1 for p in self.pins.values() if p.owner_id == user.id),
            "follower_count": user.follower_count,
            "following_count": user.following_count,
            "monthly_views": user.monthly_views,
        }

    def board_json(self, board: Board) -> dict[str, Any]:
        pins = [p for p in self.pins.values() if p.board_id == board.id]
        return {
            "id": board.id,
            "name": board.name,
            "description": board.description,
            "privacy": board.privacy,
            "is_ads_only": False,
            "owner": {"username": self.users[board.owner_id].username},
            "created_at": format_time(board.created_at),
            "board_pins_modified_at": format_time(board.pins_modified_at),
            "collaborator_count": 0,
            "follower_count": 0,
            "pin_count": len(pins),
            "media": {
                "image_cover_url": None,
                "pin_thumbnail_urls": [],
            },
        }

    def pin_json(self, pin: Pin, caller: User) -> dict[str, Any]:
        return {
            "id": pin.id,
            "created_at": format_time(pin.created_at),
            "link": pin.link,
            "title": pin.title,
            "description": pin.description,
            "alt_text": pin.alt_text,
            "dominant_color": pin.dominant_color,
            "board_id": pin.board_id,
            "board_section_id": pin.section_id,
            "board_owner": {"username": self.users[pin.owner_id].username},
            "parent_pin_id": None,
            "creative_type": pin.creative_type,
            "is_owner": pin.owner_id == caller.id,
            "is_standard": True,
            "has_been_promoted": False,
            "media": pin.media,
            "pin_metrics": None,
        }

    # -- boards and sections ------------------------------------------------------

    def own_board(self, caller: Caller, board_id: str) -> Board:
        board = self.boards.get(board_id)
        if board is None or board.owner_id != caller.user.id:
            raise err(BOARD_NOT_FOUND)
        if board.privacy == "SECRET" and not caller.token.scopes & {
            "boards:read_secret",
            "boards:write_secret",
        }:
            raise err(BOARD_NOT_FOUND)
        return board

    def list_boards(
        self, caller: Caller, bookmark: str | None, page_size: int, privacy: str | None
    ) -> dict[str, Any]:
        secret_ok = "boards:read_secret" in caller.token.scopes
        wanted = {
            None: {"PUBLIC", "PROTECTED", "SECRET"} if secret_ok else {"PUBLIC", "PROTECTED"},
            "ALL": {"PUBLIC", "PROTECTED", "SECRET"},
            "PUBLIC": {"PUBLIC"},
            "PROTECTED": {"PROTECTED"},
            "SECRET": {"SECRET"},
            "PUBLIC_AND_SECRET": {"PUBLIC", "SECRET"},
        }.get(privacy)
        if wanted is None:
            raise bad_request("Invalid privacy.")
        if "SECRET" in wanted and not secret_ok and privacy is not None:
            raise err(MISSING_SCOPE)
        boards = [
            b for b in self.boards.values() if b.owner_id == caller.user.id and b.privacy in wanted
        ]
        chunk, next_bookmark = _page(
            boards, f"boards:{caller.user.id}:{privacy}", bookmark, page_size
        )
        return {"items": [self.board_json(b) for b in chunk], "bookmark": next_bookmark}

    def create_board(self, caller: Caller, body: Mapping[str, Any]) -> dict[str, Any]:
        unknown = set(body) - {"name", "description", "privacy", "is_ads_only"}
        if unknown:
            raise bad_request(f"Unknown fields: {', '.join(sorted(unknown))}.")
        name = body.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 180:
            raise bad_request("The board name is invalid or duplicated.")
        if any(
            b.owner_id == caller.user.id and b.name.lower() == name.lower()
            for b in self.boards.values()
        ):
            raise bad_request("The board name is invalid or duplicated.")
        privacy = body.get("privacy", "PUBLIC")
        if privacy not in ("PUBLIC", "PROTECTED", "SECRET"):
            raise bad_request("Invalid privacy.")
        if privacy == "SECRET" and "boards:write_secret" not in caller.token.scopes:
            raise err(MISSING_SCOPE)
        description = body.get("description")
        if description is not None and not isinstance(description, str):
            raise bad_request("Invalid description.")
        board = self._new_board(caller.user, name, description, privacy, None)
        return self.board_json(board)

    def list_sections(
        self, caller: Caller, board_id: str, bookmark: str | None, page_size: int
    ) -> dict[str, Any]:
        board = self.own_board(caller, board_id)
        sections = [s for s in self.sections.values() if s.board_id == board.id]
        chunk, next_bookmark = _page(sections, f"sections:{board.id}", bookmark, page_size)
        return {"items": [{"id": s.id, "name": s.name} for s in chunk], "bookmark": next_bookmark}

    def create_section(
        self, caller: Caller, board_id: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        board = self.own_board(caller, board_id)
        name = body.get("name")
        if not isinstance(name, str) or not 1 <= len(name) <= 180 or set(body) - {"name"}:
            raise ApiError(400, 400, "Invalid board section parameters.")
        if any(s.board_id == board.id and s.name == name for s in self.sections.values()):
            raise ApiError(400, 400, "Invalid board section parameters.")
        section = self._new_section(board, name)
        return {"id": section.id, "name": section.name}

    def board_pins(
        self, caller: Caller, board_id: str, bookmark: str | None, page_size: int
    ) -> dict[str, Any]:
        board = self.own_board(caller, board_id)
        pins = sorted(
            (p for p in self.pins.values() if p.board_id == board.id),
            key=lambda p: (p.created_at, int(p.id)),
            reverse=True,
        )
        chunk, next_bookmark = _page(pins, f"board-pins:{board.id}", bookmark, page_size)
        return {"items": [self.pin_json(p, caller.user) for p in chunk], "bookmark": next_bookmark}

    # -- pins ---------------------------------------------------------------------

    def _media_of(self, caller: Caller, source: Any) -> tuple[str, dict[str, Any]]:
        if not isinstance(source, dict):
            raise bad_request("media_source is required.")
        kind = source.get("source_type")
        if kind == "image_url":
            url = source.get("url")
            self._check_image(url)
            return "REGULAR", {"media_type": "image", "images": _images(str(url))}
        if kind == "image_base64":
            data = source.get("data")
            if source.get("content_type") not in ("image/jpeg", "image/png") or not isinstance(
                data, str
            ):
                raise bad_request("Invalid image_base64 media source.")
            try:
                base64.b64decode(data, validate=True)
            except binascii.Error as exc:
                raise bad_request("Invalid base64 image data.") from exc
            digest = hashlib.sha256(data.encode()).hexdigest()[:16]
            url = f"https://i.pinimg.com/originals/{digest}.jpg"
            return "REGULAR", {"media_type": "image", "images": _images(url)}
        if kind == "multiple_image_urls":
            items = source.get("items")
            if not isinstance(items, list) or not 2 <= len(items) <= 5:
                raise bad_request("A carousel needs between 2 and 5 images.")
            out = []
            for item in items:
                if not isinstance(item, dict):
                    raise bad_request("Invalid carousel item.")
                self._check_image(item.get("url"))
                out.append(
                    {
                        "item_type": "image",
                        "title": item.get("title"),
                        "description": item.get("description"),
                        "link": item.get("link"),
                        "images": _images(item["url"]),
                    }
                )
            return "CAROUSEL", {"media_type": "multiple_images", "items": out}
        if kind == "video_id":
            media_id = source.get("media_id")
            media = self.media.get(media_id) if isinstance(media_id, str) else None
            if media is None or media.owner_id != caller.user.id:
                raise bad_request("Invalid media_id.")
            status = media.status(self.clock.now())
            if status != "succeeded":
                raise bad_request(f"Media upload is not ready (status {status}).")
            cover = source.get("cover_image_url")
            key_frame = source.get("cover_image_key_frame_time")
            if cover is None and key_frame is None and source.get("cover_image_data") is None:
                raise bad_request("missing cover_image_url")
            if cover is not None and not _valid_url(cover):
                raise bad_request("Whoops! It looks like you entered an invalid URL.")
            if key_frame is not None and (not isinstance(key_frame, int) or key_frame < 0):
                raise bad_request("Invalid cover_image_key_frame_time.")
            cover_url = cover or f"https://i.pinimg.com/videos/thumbnails/{media.id}.jpg"
            return "VIDEO", {
                "media_type": "video",
                "cover_image_url": cover_url,
                "video_url": None,
                "duration": 15000.0,
                "height": 1920,
                "width": 1080,
                "images": _images(cover_url),
            }
        raise bad_request(f"Unsupported media source_type {kind!r}.")

    @staticmethod
    def _check_image(url: Any) -> None:
        if not _valid_url(url):
            raise bad_request("Whoops! It looks like you entered an invalid URL. Please try again.")
        host = urlsplit(url).hostname or ""
        # Test hooks: hosts under the reserved .invalid TLD stand for bad images.
        if host == "broken.invalid":
            raise ApiError(403, 235, "Sorry! We could not fetch the image.")
        if host == "small.invalid":
            raise ApiError(403, 233, "Your image is too small. Please upload a larger image.")

    def create_pin(self, caller: Caller, body: Mapping[str, Any]) -> dict[str, Any]:
        unknown = set(body) - _PIN_FIELDS
        if unknown:
            raise bad_request(f"Unknown fields: {', '.join(sorted(unknown))}.")
        board_id = body.get("board_id")
        if not isinstance(board_id, str) or not board_id.isdigit():
            raise bad_request("board_id is required.")
        for name, limit in _LIMITS.items():
            value = body.get(name)
            if value is not None and (not isinstance(value, str) or len(value) > limit):
                raise bad_request(f"{name} must be a string of at most {limit} characters.")
        if body.get("link") is not None and not _valid_url(body["link"]):
            raise bad_request("Whoops! It looks like you entered an invalid URL. Please try again.")
        if caller.app is not None and caller.app.trial_access:
            raise err(TRIAL_PINS)
        board = self.own_board(caller, board_id)
        if board.privacy == "SECRET" and "pins:write_secret" not in caller.token.scopes:
            raise err(MISSING_SCOPE)
        section_id = body.get("board_section_id")
        if section_id is not None:
            section = self.sections.get(section_id) if isinstance(section_id, str) else None
            if section is None or section.board_id != board.id:
                raise err(SECTION_NOT_FOUND)
        creative_type, media = self._media_of(caller, body.get("media_source"))
        now = self.clock.now()
        pin = Pin(
            self.next_id(),
            caller.user.id,
            board.id,
            section_id,
            body.get("title"),
            body.get("description"),
            body.get("link"),
            body.get("alt_text"),
            body.get("dominant_color"),
            now,
            creative_type,
            media,
        )
        self.pins[pin.id] = pin
        board.pins_modified_at = now
        self.stats.pins_created[caller.user.id] += 1
        self.stats.pins_created_by_board[board.id] += 1
        return self.pin_json(pin, caller.user)

    def own_pin(self, caller: Caller, pin_id: str) -> Pin:
        pin = self.pins.get(pin_id)
        if pin is None or pin.owner_id != caller.user.id:
            raise err(PIN_NOT_FOUND)
        return pin

    def delete_pin(self, caller: Caller, pin_id: str) -> None:
        pin = self.own_pin(caller, pin_id)
        del self.pins[pin.id]
        self.boards[pin.board_id].pins_modified_at = self.clock.now()
        self.stats.pins_deleted[caller.user.id] += 1

    def list_pins(self, caller: Caller, bookmark: str | None, page_size: int) -> dict[str, Any]:
        pins = sorted(
            (p for p in self.pins.values() if p.owner_id == caller.user.id),
            key=lambda p: (p.created_at, int(p.id)),
            reverse=True,
        )
        chunk, next_bookmark = _page(pins, f"pins:{caller.user.id}", bookmark, page_size)
        return {"items": [self.pin_json(p, caller.user) for p in chunk], "bookmark": next_bookmark}

    # -- media --------------------------------------------------------------------

    def register_media(
        self, caller: Caller, body: Mapping[str, Any], base_url: str
    ) -> dict[str, Any]:
        if body.get("media_type") != "video" or set(body) - {"media_type"}:
            raise bad_request("media_type must be 'video'.")
        now = self.clock.now()
        media_id = self.next_id()
        signature = hmac.new(self.secret, media_id.encode(), hashlib.sha256).hexdigest()
        media = Media(media_id, caller.user.id, now, signature)
        self.media[media_id] = media
        return {
            "media_id": media_id,
            "media_type": "video",
            "upload_url": f"{base_url}/_emulator/media-upload/{media_id}",
            "upload_parameters": self.upload_parameters(media),
        }

    def upload_parameters(self, media: Media) -> dict[str, str]:
        stamp = media.registered_at.strftime("%Y%m%dT%H%M%SZ")
        policy = base64.b64encode(
            f'{{"expiration":"{format_time(media.registered_at)}","media":"{media.id}"}}'.encode()
        ).decode()
        return {
            "x-amz-date": stamp,
            "x-amz-signature": media.signature,
            "x-amz-security-token": "emulator-" + media.signature[:16],
            "x-amz-algorithm": "AWS4-HMAC-SHA256",
            "key": f"uploads/emulator/{media.owner_id}/{media.id}",
            "policy": policy,
            "x-amz-credential": f"EMULATOR/{stamp[:8]}/us-east-1/s3/aws4_request",
            "Content-Type": "multipart/form-data",
        }

    def media_status(self, caller: Caller, media_id: str) -> dict[str, Any]:
        media = self.media.get(media_id)
        if media is None or media.owner_id != caller.user.id:
            raise ApiError(404, 404, "Media upload not found")
        return {
            "media_id": media.id,
            "media_type": "video",
            "status": media.status(self.clock.now()),
        }

    def accept_upload(self, media_id: str, fields: Sequence[tuple[str, str]], data: bytes) -> None:
        """Check an S3-style POST upload (fields in order, then the file) and store it."""
        media = self.media.get(media_id)
        if media is None:
            raise UploadRejected(404, "NoSuchUpload", "The upload does not exist.")
        if media.uploaded_at is not None:
            raise UploadRejected(400, "InvalidRequest", "This upload was already used.")
        now = self.clock.now()
        if now > media.registered_at + dt.timedelta(seconds=UPLOAD_WINDOW_SECONDS):
            raise UploadRejected(403, "AccessDenied", "Invalid according to Policy: expired.")
        expected = self.upload_parameters(media)
        got = dict(fields)
        for key, value in expected.items():
            if key not in got:
                raise UploadRejected(400, "InvalidArgument", f"Missing form field {key!r}.")
            if got[key] != value:
                raise UploadRejected(403, "AccessDenied", f"Form field {key!r} does not match.")
        media.uploaded_at = now
        media.size = len(data)
        media.broken = not _looks_like_video(data)
        media.will_fail = self.rng.random() < self.media_processing.failure_share
        media.processing_seconds = self.media_processing.seconds
        self.stats.media_uploads += 1

    # -- analytics ----------------------------------------------------------------

    def _range(self, query: Mapping[str, str]) -> tuple[dt.date, dt.date, dt.date]:
        try:
            start = dt.date.fromisoformat(query["start_date"])
            end = dt.date.fromisoformat(query["end_date"])
        except (KeyError, ValueError) as exc:
            raise ApiError(400, 400, "start_date and end_date (YYYY-MM-DD) are required.") from exc
        today = self.clock.now().date()
        if start > end:
            raise ApiError(400, 400, "start_date must not be after end_date.")
        if start < today - dt.timedelta(days=90):
            raise ApiError(400, 400, "You can only get data from the last 90 days.")
        if end > today:
            raise ApiError(400, 400, "end_date cannot be in the future.")
        if (end - start).days > 90:
            raise ApiError(400, 400, "end_date cannot be more than 90 days past start_date.")
        return start, end, today

    def pin_analytics(
        self, caller: Caller, pin_id: str, query: Mapping[str, str]
    ) -> dict[str, Any]:
        start, end, today = self._range(query)
        pin = self.own_pin(caller, pin_id)
        raw = query.get("metric_types", "")
        metrics = [m for m in raw.split(",") if m]
        allowed = (
            analytics.VIDEO_PIN_METRICS if pin.creative_type == "VIDEO" else analytics.PIN_METRICS
        )
        if not metrics or any(m not in allowed for m in metrics):
            raise ApiError(400, 400, "Invalid pins analytics parameters.")
        if query.get("split_field", "NO_SPLIT") != "NO_SPLIT":
            raise ApiError(400, 400, "The emulator only serves split_field=NO_SPLIT.")
        return {
            "all": analytics.pin_report(pin.id, pin.created_at.date(), start, end, today, metrics)
        }

    def account_analytics(self, caller: Caller, query: Mapping[str, str]) -> dict[str, Any]:
        start, end, today = self._range(query)
        raw = query.get("metric_types", "")
        metrics = [m for m in raw.split(",") if m] or list(analytics.ACCOUNT_METRICS)
        if any(m not in analytics.ACCOUNT_METRICS for m in metrics):
            raise ApiError(400, 400, "Invalid user accounts analytics parameters.")
        if query.get("split_field", "NO_SPLIT") != "NO_SPLIT":
            raise ApiError(400, 400, "The emulator only serves split_field=NO_SPLIT.")
        pins = [
            (p.id, p.created_at.date()) for p in self.pins.values() if p.owner_id == caller.user.id
        ]
        return {"all": analytics.account_report(pins, start, end, today, metrics)}


class UploadRejected(Exception):
    """An S3-style refusal of a media upload (answered as XML, like S3)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _looks_like_video(data: bytes) -> bool:
    # MP4/MOV carry "ftyp" at offset 4; WebM/Matroska start with the EBML magic.
    return len(data) >= 12 and (data[4:8] == b"ftyp" or data.startswith(b"\x1aE\xdf\xa3"))
