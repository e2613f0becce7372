"""Request and response models of the public API; the OpenAPI document is generated from them."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
)

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")


def _rfc3339(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("must carry an explicit UTC offset")
        return value
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 date-time string, e.g. 2026-05-01T09:00:00+02:00")
    if not _RFC3339.match(value):
        if re.match(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?$", value):
            raise ValueError(
                "has no UTC offset; add 'Z' or '+HH:MM' (a naive time is never guessed)"
            )
        raise ValueError("must be an RFC 3339 date-time with an offset, e.g. 2026-05-01T09:00:00Z")
    try:
        return datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"is not a valid date-time: {exc}") from None


def _http_url(value: str) -> str:
    lowered = value.lower()
    if not (lowered.startswith("http://") or lowered.startswith("https://")) or len(value) < 10:
        raise ValueError("must be an http or https URL")
    if any(c.isspace() for c in value):
        raise ValueError("must not contain spaces")
    return value


Rfc3339 = Annotated[
    datetime,
    BeforeValidator(_rfc3339),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
HttpUrl = Annotated[
    str,
    Field(max_length=2048, json_schema_extra={"format": "uri"}),
    AfterValidator(_http_url),
]
ProfileName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="Letters, digits, '-', '_' and '.', starting with a letter or digit",
        examples=["shop-account"],
    ),
]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Response(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ------------------------------------------------------------------ requests


class ProfileCreate(_Request):
    """A profile groups one Pinterest account and its posts."""

    name: ProfileName


class PostCreate(_Request):
    """A pin to publish now or at ``scheduled_date``."""

    profile_name: ProfileName
    platforms: list[Literal["pinterest"]] = Field(min_length=1, max_length=1)
    post_type: Literal["image", "video"]
    title: str | None = Field(default=None, max_length=100)
    description: str | None = Field(default=None, max_length=500)
    media_urls: list[HttpUrl] = Field(
        min_length=1,
        max_length=5,
        description="One image, 2-5 images (a multi-image pin), or exactly one video",
    )
    pinterest_board_id: str = Field(
        min_length=1,
        max_length=200,
        description="A board id, or a board name (case-insensitive) of the profile's boards",
    )
    pinterest_board_section_id: str | None = Field(default=None, pattern=r"^\d{1,32}$")
    pinterest_link: HttpUrl | None = None
    pinterest_alt_text: str | None = Field(default=None, max_length=500)
    pinterest_cover_image_url: HttpUrl | None = None
    pinterest_cover_key_frame_time: float | None = Field(
        default=None, ge=0, le=86400, allow_inf_nan=False
    )
    scheduled_date: Rfc3339 | None = Field(
        default=None,
        description="RFC 3339 with an offset; at most 60 s in the past and a year ahead. "
        "Omitted: publish now.",
    )


class PostUpdate(_Request):
    """Fields to change on a scheduled post; ``null`` clears an optional field."""

    title: str | None = Field(default=None, max_length=100)
    description: str | None = Field(default=None, max_length=500)
    media_urls: list[HttpUrl] | None = Field(default=None, min_length=1, max_length=5)
    pinterest_board_id: str | None = Field(default=None, min_length=1, max_length=200)
    pinterest_board_section_id: str | None = Field(default=None, pattern=r"^\d{1,32}$")
    pinterest_link: HttpUrl | None = None
    pinterest_alt_text: str | None = Field(default=None, max_length=500)
    pinterest_cover_image_url: HttpUrl | None = None
    pinterest_cover_key_frame_time: float | None = Field(
        default=None, ge=0, le=86400, allow_inf_nan=False
    )
    scheduled_date: Rfc3339 | None = None


PostStatus = Literal["scheduled", "publishing", "paused", "published", "failed", "cancelled"]


class PostListQuery(_Request):
    """Filters of the post list and export."""

    status: PostStatus | None = None
    profile_name: str | None = Field(default=None, max_length=64)
    from_: Rfc3339 | None = Field(
        default=None,
        alias="from",
        description="Posts due (scheduled_date, or creation time) at or after this instant",
    )
    to: Rfc3339 | None = Field(default=None, description="...and before this instant")
    limit: int = Field(default=20, ge=1, le=100)
    cursor: str | None = Field(default=None, max_length=500)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ExportQuery(_Request):
    """Filters of the export plus its format."""

    format: Literal["csv", "json"] = "json"
    status: PostStatus | None = None
    profile_name: str | None = Field(default=None, max_length=64)
    from_: Rfc3339 | None = Field(default=None, alias="from")
    to: Rfc3339 | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# ------------------------------------------------------------------ responses


class FieldProblem(_Response):
    field: str
    message: str


class ProblemDetails(BaseModel):
    """RFC 9457 problem details; some problems add members (limit, boards, candidates...)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(examples=["urn:codiv:problem:validation_error"])
    title: str
    status: int
    code: str
    detail: str
    errors: list[FieldProblem] = Field(default_factory=list)


class Warning(_Response):
    code: str
    field: str | None
    message: str


class PostErrorOut(_Response):
    code: str
    message: str
    retryable: bool


class TimelineEntry(_Response):
    at: datetime
    kind: str = Field(
        description="accepted, edited, rescheduled, cancelled, released, attempt_started, "
        "attempt_failed, published, failed, change_rejected, rejected (a producer's "
        "submission that broke a rule), paused (the Pinterest account needs reauth), "
        "resumed (it was reconnected)"
    )
    attempt: int | None
    message: str | None


class Post(_Response):
    id: str
    object: Literal["post"] = "post"
    status: PostStatus
    profile_name: str
    platforms: list[str]
    post_type: Literal["image", "video"]
    title: str | None
    description: str | None
    media_urls: list[str]
    pinterest_board_id: str
    pinterest_board_name: str | None
    pinterest_board_section_id: str | None
    pinterest_link: str | None
    pinterest_alt_text: str | None
    pinterest_cover_image_url: str | None
    pinterest_cover_key_frame_time: float | None
    scheduled_date: datetime | None = Field(description="UTC; null means as soon as possible")
    revision: int
    attempts: int
    pin_id: str | None
    pin_url: str | None
    error: PostErrorOut | None
    warnings: list[Warning]
    created_at: datetime
    updated_at: datetime
    timeline: list[TimelineEntry] | None = Field(
        default=None, description="Present on GET /v1/posts/{post_id}"
    )


class PostList(_Response):
    object: Literal["list"] = "list"
    data: list[Post]
    has_more: bool
    next_cursor: str | None


class ValidationReport(_Response):
    """The outcome of a preflight: nothing is created and no quota is used."""

    object: Literal["validation"] = "validation"
    valid: bool
    errors: list[FieldProblem]
    warnings: list[Warning]
    pinterest_board_id: str | None
    pinterest_board_name: str | None


class PinterestConnection(_Response):
    status: Literal["not_connected", "connected", "needs_reauth", "disconnected"]
    account_id: str | None
    username: str | None
    token_health: Literal["ok", "expiring", "needs_reauth", "none"]
    reason: str | None
    refresh_token_expires_at: datetime | None
    connected_at: datetime | None


class Profile(_Response):
    id: str
    object: Literal["profile"] = "profile"
    name: str
    created_at: datetime
    pinterest: PinterestConnection
    boards_count: int
    boards_synced_at: datetime | None


class ProfileList(_Response):
    object: Literal["list"] = "list"
    data: list[Profile]
    has_more: bool


class Deleted(_Response):
    id: str
    object: str
    deleted: bool


class ConnectStart(_Response):
    authorize_url: str
    state_expires_at: datetime


class Accepted(_Response):
    object: Literal["request"] = "request"
    status: Literal["accepted"] = "accepted"
    detail: str


class BoardSectionOut(_Response):
    id: str
    name: str


class BoardOut(_Response):
    id: str
    name: str
    privacy: str | None
    sections: list[BoardSectionOut]


class BoardList(_Response):
    object: Literal["list"] = "list"
    data: list[BoardOut]
    synced_at: datetime | None
