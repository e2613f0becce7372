"""Pure gateway logic: keys, plans, posting rules, board resolution, status, media sniffing."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import struct
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

API_KEY_PREFIX = "cdv_live_"
_KEY_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_KEY_BODY_LEN = 40
API_KEY_RE = re.compile(rf"^{API_KEY_PREFIX}[A-Za-z0-9]{{{_KEY_BODY_LEN}}}$")
DISPLAY_PREFIX_LEN = len(API_KEY_PREFIX) + 6

PLANS = ("free", "pro")
TERMINAL = frozenset({"published", "failed"})  # 'paused' is not: the post resumes on reconnect
EDITABLE = frozenset({"scheduled"})
MAX_SCHEDULE_AHEAD = timedelta(days=365)
MAX_SCHEDULE_PAST = timedelta(seconds=60)

PROBLEM_TYPE = "urn:codiv:problem:{code}"


# ------------------------------------------------------------------ errors


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


class Problem(Exception):
    """An RFC 9457 problem: the handler layer renders it as application/problem+json."""

    def __init__(
        self,
        status: int,
        code: str,
        title: str,
        detail: str | None = None,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.errors = errors or []
        self.headers = headers or {}
        self.extra = extra

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": PROBLEM_TYPE.format(code=self.code),
            "title": self.title,
            "status": self.status,
            "code": self.code,
            "detail": self.detail or self.title,
            "errors": [e.as_dict() for e in self.errors],
        }
        out.update(self.extra)
        return out


def validation_problem(errors: list[FieldError], detail: str | None = None) -> Problem:
    n = len(errors)
    return Problem(
        422,
        "validation_error",
        "The request is invalid",
        detail or f"{n} field{'s' if n != 1 else ''} failed validation; see errors.",
        errors,
    )


def unauthorized() -> Problem:
    # One body for missing, malformed, revoked and unknown keys: no hint which.
    return Problem(
        401,
        "unauthorized",
        "Authentication required",
        "Send a valid API key as 'Authorization: Bearer <key>'.",
        headers={"WWW-Authenticate": 'Bearer realm="codiv"'},
    )


def not_found(what: str, ident: str) -> Problem:
    return Problem(404, "not_found", f"No such {what}", f"No {what} {ident!r} in this workspace.")


# ------------------------------------------------------------------ API keys


@dataclass(frozen=True)
class NewApiKey:
    key: str
    prefix: str
    key_hash: str


def hash_api_key(key: str) -> str:
    # The keys carry 238 bits of entropy, so one fast hash is enough (no KDF needed).
    return hashlib.sha256(key.encode()).hexdigest()


def generate_api_key() -> NewApiKey:
    body = "".join(secrets.choice(_KEY_ALPHABET) for _ in range(_KEY_BODY_LEN))
    key = API_KEY_PREFIX + body
    return NewApiKey(key=key, prefix=key[:DISPLAY_PREFIX_LEN], key_hash=hash_api_key(key))


def parse_bearer(header: str | None) -> str | None:
    """The API key of an ``Authorization: Bearer`` header, None when absent or malformed."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not API_KEY_RE.match(token):
        return None
    return token


# ------------------------------------------------------------------ plans, windows


def month_start(now: datetime) -> date:
    return now.astimezone(UTC).date().replace(day=1)


def next_month_start(now: datetime) -> datetime:
    first = month_start(now)
    year, month = (first.year + 1, 1) if first.month == 12 else (first.year, first.month + 1)
    return datetime(year, month, 1, tzinfo=UTC)


def window_start(now: datetime, seconds: int) -> datetime:
    ts = int(now.timestamp())
    return datetime.fromtimestamp(ts - ts % seconds, UTC)


# ------------------------------------------------------------------ posting rules


def rfc3339(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def schedule_errors(
    scheduled: datetime | None, now: datetime, field_name: str = "scheduled_date"
) -> list[FieldError]:
    if scheduled is None:
        return []
    if scheduled < now - MAX_SCHEDULE_PAST:
        return [
            FieldError(
                field_name,
                f"is in the past ({rfc3339(scheduled)}); it may be at most 60 seconds before "
                f"now ({rfc3339(now)}). Omit it to publish now.",
            )
        ]
    if scheduled > now + MAX_SCHEDULE_AHEAD:
        return [
            FieldError(
                field_name,
                f"is more than a year ahead; the latest allowed is "
                f"{rfc3339(now + MAX_SCHEDULE_AHEAD)}",
            )
        ]
    return []


def cross_field_errors(fields: dict[str, Any]) -> list[FieldError]:
    """Rules that involve several fields of a (validated) post body."""
    errors: list[FieldError] = []
    media = fields.get("media_urls") or []
    if fields.get("post_type") == "video":
        if len(media) != 1:
            errors.append(
                FieldError("media_urls", f"a video post takes exactly one URL (got {len(media)})")
            )
        if (
            fields.get("pinterest_cover_image_url") is not None
            and fields.get("pinterest_cover_key_frame_time") is not None
        ):
            errors.append(
                FieldError(
                    "pinterest_cover_key_frame_time",
                    "give either pinterest_cover_image_url or pinterest_cover_key_frame_time",
                )
            )
    else:
        for name in ("pinterest_cover_image_url", "pinterest_cover_key_frame_time"):
            if fields.get(name) is not None:
                errors.append(FieldError(name, "applies to video posts only"))
    return errors


@dataclass(frozen=True)
class Finding:
    """A non-blocking, factual finding (a warning)."""

    code: str
    field: str | None
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "field": self.field, "message": self.message}


def request_warnings(fields: dict[str, Any]) -> list[Finding]:
    found: list[Finding] = []
    if fields.get("post_type") == "image" and not (fields.get("pinterest_alt_text") or "").strip():
        found.append(
            Finding(
                "missing_alt_text",
                "pinterest_alt_text",
                "no alt text: screen-reader users get no description of the image",
            )
        )
    if not (fields.get("description") or "").strip():
        found.append(Finding("empty_description", "description", "the description is empty"))
    if not fields.get("pinterest_link"):
        found.append(
            Finding("missing_link", "pinterest_link", "no destination link: the pin leads nowhere")
        )
    if (
        fields.get("post_type") == "video"
        and fields.get("pinterest_cover_image_url") is None
        and fields.get("pinterest_cover_key_frame_time") is None
    ):
        found.append(
            Finding(
                "default_cover",
                "pinterest_cover_image_url",
                "no cover given: the video's first frame will be the cover",
            )
        )
    return found


# ------------------------------------------------------------------ boards


@dataclass(frozen=True)
class BoardRef:
    id: str
    name: str
    sections: tuple[tuple[str, str], ...] = ()

    def summary(self) -> dict[str, str]:
        return {"id": self.id, "name": self.name}


def resolve_board(value: str, boards: list[BoardRef], profile_name: str) -> BoardRef:
    """A board by id, else by name (case-insensitive); a 422 Problem lists the choices."""
    for board in boards:
        if board.id == value:
            return board
    wanted = value.strip().casefold()
    matches = [b for b in boards if b.name.strip().casefold() == wanted]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        return _raise(
            Problem(
                422,
                "board_ambiguous",
                "The board name is ambiguous",
                f"{len(matches)} boards of profile {profile_name!r} are named {value!r}; "
                "send the board id instead.",
                [FieldError("pinterest_board_id", f"matches {len(matches)} boards; use an id")],
                candidates=[b.summary() for b in matches],
            )
        )
    hint = (
        "The profile has no synced boards; connect it or POST "
        f"/v1/profiles/{profile_name}/boards:sync."
        if not boards
        else "Use one of the boards listed (id or name), or sync boards if it is new."
    )
    return _raise(
        Problem(
            422,
            "board_not_found",
            "Unknown board",
            f"Profile {profile_name!r} has no board with id or name {value!r}. {hint}",
            [FieldError("pinterest_board_id", f"no board with id or name {value!r}")],
            boards=[b.summary() for b in boards],
        )
    )


def check_section(section_id: str | None, board: BoardRef) -> None:
    if section_id is None or not board.sections:
        return
    if section_id not in {sid for sid, _ in board.sections}:
        raise Problem(
            422,
            "board_section_not_found",
            "Unknown board section",
            f"Board {board.name!r} has no section {section_id!r}.",
            [FieldError("pinterest_board_section_id", f"not a section of board {board.id}")],
            sections=[{"id": sid, "name": name} for sid, name in board.sections],
        )


def _raise(problem: Problem) -> BoardRef:
    raise problem


# ------------------------------------------------------------------ status from events


@dataclass
class StatusChange:
    """What one post.* event does to a post: new status (or None) and a timeline entry."""

    status: str | None
    kind: str
    message: str | None = None
    attempt: int | None = None
    columns: dict[str, Any] = field(default_factory=dict)


def status_change(current: str, event_type: str, payload: dict[str, Any]) -> StatusChange | None:
    """How ``event_type`` changes a post now in ``current``; None when it changes nothing.

    Terminal states (published, failed) are never overwritten by an older event, except
    that ``published`` wins over ``failed`` (a pin exists, whatever an earlier attempt
    reported). ``cancelled`` is not terminal: a cancel the scheduler rejected after
    release means the post continues, so release and attempt events revive it.
    """
    attempt = payload.get("attempt")
    if event_type == "post.published":
        if current == "published":
            return None
        return StatusChange(
            "published",
            "published",
            f"pin {payload['pin_id']} created",
            attempt,
            {
                "pin_id": payload["pin_id"],
                "pin_url": f"https://www.pinterest.com/pin/{payload['pin_id']}/",
                "published_at": payload.get("published_at"),
                "error": None,
            },
        )
    if event_type == "post.failed":
        error = payload.get("error") or {}
        note = f"failed: {error.get('code')}: {error.get('message')}"
        if current in TERMINAL:
            return StatusChange(None, "failed", note + " (ignored: post already final)", attempt)
        return StatusChange("failed", "failed", note, attempt, {"error": error})
    if event_type == "post.paused":  # the account needs reauth; not failed, not retried
        if current in TERMINAL:
            return None
        return StatusChange(
            "paused",
            "paused",
            f"paused: {payload.get('reason')} It fails at {payload.get('fail_at')} if the "
            "account is not reconnected by then.",
            attempt,
        )
    if event_type == "post.resumed":
        if current in TERMINAL:
            return None
        return StatusChange(
            "publishing" if current == "paused" else None,
            "resumed",
            f"resumed: the Pinterest account was reconnected; attempt {attempt} at "
            f"{payload.get('retry_at')}",
        )
    if event_type == "post.retry" and payload.get("resumed"):
        return None  # the resume itself is recorded from post.resumed
    new_status = None if current in TERMINAL else "publishing"
    if event_type == "post.due":
        return StatusChange(
            new_status,
            "released",
            f"released for attempt {attempt}",
            attempt,
            {"released_at": payload.get("due_at")} if new_status else {},
        )
    if event_type == "post.publishing":
        return StatusChange(new_status, "attempt_started", f"attempt {attempt} started", attempt)
    if event_type == "post.retry":
        failed = max(1, int(attempt or 2) - 1)
        return StatusChange(
            new_status,
            "attempt_failed",
            f"attempt {failed} failed: {payload.get('reason')}; "
            f"attempt {attempt} at {payload.get('retry_at')}",
            failed,
        )
    if event_type == "post.change_rejected":
        change = payload.get("change")
        revive = change == "cancel" and current == "cancelled"
        return StatusChange(
            "publishing" if revive else None,
            "change_rejected",
            f"{change} rejected: {payload.get('reason')}"
            + ("; the post continues" if revive else ""),
        )
    return None


# ------------------------------------------------------------------ cursors, hashing


def encode_cursor(created_at: datetime, post_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), post_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, post_id = json.loads(raw)
        dt = datetime.fromisoformat(created)
        if dt.tzinfo is None or not isinstance(post_id, str):
            raise ValueError
        return dt, post_id
    except (ValueError, TypeError) as exc:
        raise Problem(
            422,
            "validation_error",
            "The request is invalid",
            "The cursor is not one this API returned.",
            [FieldError("cursor", "is not a valid cursor")],
        ) from exc


def request_hash(method: str, path: str, body: Any) -> str:
    """A fingerprint of a request: same method, path and JSON value (key order ignored)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{method} {path}\n{canonical}".encode()).hexdigest()


# ------------------------------------------------------------------ media sniffing


@dataclass(frozen=True)
class Sniffed:
    kind: str  # "image", "video" or "unknown"
    format: str | None
    width: int | None = None
    height: int | None = None


def sniff_media(head: bytes) -> Sniffed:
    """Identify an image or video container from its first bytes; image size when readable."""
    if head.startswith(b"\x89PNG\r\n\x1a\n") and len(head) >= 24:
        w, h = struct.unpack(">II", head[16:24])
        return Sniffed("image", "png", w, h)
    if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
        w, h = struct.unpack("<HH", head[6:10])
        return Sniffed("image", "gif", w, h)
    if head.startswith(b"\xff\xd8"):
        w_h = _jpeg_size(head)
        return Sniffed("image", "jpeg", *(w_h or (None, None)))
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return Sniffed("image", "webp", *(_webp_size(head) or (None, None)))
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        return Sniffed("video", "mov" if brand == b"qt  " else "mp4")
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return Sniffed("video", "webm" if b"webm" in head[:64] else "mkv")
    return Sniffed("unknown", None)


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        length = struct.unpack(">H", data[i + 2 : i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE):
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return w, h
        i += 2 + length
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30:
        w, h = struct.unpack("<HH", data[26:30])
        return w & 0x3FFF, h & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25:
        b = data[21:25]
        w = 1 + (((b[1] & 0x3F) << 8) | b[0])
        h = 1 + (((b[3] & 0xF) << 10) | (b[2] << 2) | ((b[1] & 0xC0) >> 6))
        return w, h
    if chunk == b"VP8X" and len(data) >= 30:
        w = 1 + int.from_bytes(data[24:27], "little")
        h = 1 + int.from_bytes(data[27:30], "little")
        return w, h
    return None


def image_findings(field_name: str, width: int | None, height: int | None) -> list[Finding]:
    if not width or not height:
        return [Finding("image_size_unknown", field_name, "could not read the image's size")]
    found: list[Finding] = []
    if abs(width / height - 2 / 3) > 0.02:
        found.append(
            Finding(
                "aspect_ratio_not_2_3",
                field_name,
                f"the image is {width}x{height}; Pinterest recommends a 2:3 aspect ratio",
            )
        )
    if width < 600 or height < 900:
        found.append(
            Finding(
                "image_too_small",
                field_name,
                f"the image is {width}x{height}, under the recommended 600x900",
            )
        )
    return found
