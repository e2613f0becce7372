"""Frozen pydantic models for what the Pinterest client sends and returns."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "AccountAnalytics",
    "Board",
    "BoardSection",
    "CarouselItem",
    "DailyMetrics",
    "ImageUrlSource",
    "MediaSource",
    "MediaStatus",
    "MediaUpload",
    "MultipleImageUrlsSource",
    "Pin",
    "PinAnalytics",
    "PinCreate",
    "TokenResponse",
    "UserAccount",
    "VideoSource",
]

Id = Annotated[str, Field(pattern=r"^\d+$")]


def _as_utc(value: dt.datetime) -> dt.datetime:
    # Pinterest sometimes answers without an offset ("2022-10-13T01:40:29"): that is UTC.
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


UtcDatetime = Annotated[dt.datetime, AfterValidator(_as_utc)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class TokenResponse(_Frozen):
    """Answer of ``POST /oauth/token``. Always persist the new ``refresh_token``."""

    access_token: str = Field(repr=False)
    refresh_token: str | None = Field(default=None, repr=False)
    token_type: str = "bearer"  # noqa: S105 - a type name, not a secret
    expires_in: int
    refresh_token_expires_in: int | None = None
    refresh_token_expires_at: int | None = None
    scope: str

    @property
    def scopes(self) -> frozenset[str]:
        """The granted scopes (Pinterest separates them with commas; spaces accepted)."""
        return frozenset(s for s in self.scope.replace(" ", ",").split(",") if s)


class UserAccount(_Frozen):
    id: str
    username: str
    account_type: str | None = None
    profile_image: str | None = None
    website_url: str | None = None
    about: str | None = None
    business_name: str | None = None
    board_count: int | None = None
    pin_count: int | None = None
    follower_count: int | None = None
    following_count: int | None = None
    monthly_views: int | None = None


class _Owner(_Frozen):
    username: str | None = None


class Board(_Frozen):
    id: str
    name: str
    description: str | None = None
    privacy: str = "PUBLIC"
    is_ads_only: bool = False
    owner: _Owner | None = None
    created_at: UtcDatetime | None = None
    board_pins_modified_at: UtcDatetime | None = None
    pin_count: int | None = None
    follower_count: int | None = None
    collaborator_count: int | None = None


class BoardSection(_Frozen):
    id: str
    name: str


class Pin(_Frozen):
    id: str
    board_id: str | None = None
    board_section_id: str | None = None
    title: str | None = None
    description: str | None = None
    link: str | None = None
    alt_text: str | None = None
    dominant_color: str | None = None
    created_at: UtcDatetime | None = None
    creative_type: str | None = None
    is_owner: bool | None = None
    media: dict[str, Any] | None = None

    @property
    def media_type(self) -> str | None:
        """``image``, ``video``, ``multiple_images``... from ``media.media_type``."""
        if self.media is None:
            return None
        value = self.media.get("media_type")
        return value if isinstance(value, str) else None


class ImageUrlSource(_Frozen):
    """A single image Pinterest fetches from a public URL."""

    source_type: Literal["image_url"] = "image_url"
    url: str


class CarouselItem(_Frozen):
    url: str
    title: str | None = None
    description: str | None = None
    link: str | None = None


class MultipleImageUrlsSource(_Frozen):
    """A carousel of 2 to 5 images from public URLs."""

    source_type: Literal["multiple_image_urls"] = "multiple_image_urls"
    items: tuple[CarouselItem, ...] = Field(min_length=2, max_length=5)


class VideoSource(_Frozen):
    """A video uploaded through the media flow, with exactly one kind of cover."""

    source_type: Literal["video_id"] = "video_id"
    media_id: Id
    cover_image_url: str | None = None
    cover_image_key_frame_time: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _one_cover(self) -> VideoSource:
        # Pinterest rejects a video Pin without a cover ("missing cover_image_url").
        if (self.cover_image_url is None) == (self.cover_image_key_frame_time is None):
            raise ValueError("give exactly one of cover_image_url or cover_image_key_frame_time")
        return self


MediaSource = Annotated[
    ImageUrlSource | MultipleImageUrlsSource | VideoSource, Field(discriminator="source_type")
]


class PinCreate(_Frozen):
    """Body of ``POST /pins``, with Pinterest's length limits checked before sending."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    board_id: Id
    media_source: MediaSource
    board_section_id: Id | None = None
    title: str | None = Field(default=None, max_length=100)
    description: str | None = Field(default=None, max_length=800)
    link: str | None = Field(default=None, max_length=2048)
    alt_text: str | None = Field(default=None, max_length=500)
    dominant_color: str | None = None


class MediaUpload(_Frozen):
    """A registered media upload: POST the file to ``upload_url`` with ``upload_parameters``."""

    media_id: str
    media_type: str = "video"
    upload_url: str
    upload_parameters: dict[str, str] = Field(repr=False)


MediaStatusValue = Literal["registered", "processing", "succeeded", "failed"]


class MediaStatus(_Frozen):
    media_id: str
    media_type: str = "video"
    status: MediaStatusValue

    @property
    def done(self) -> bool:
        """True once processing ended, in success or failure."""
        return self.status in ("succeeded", "failed")


class DailyMetrics(_Frozen):
    date: dt.date
    data_status: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)

    @property
    def ready(self) -> bool:
        """Only READY rows are final; recent days are PROCESSING and change later."""
        return self.data_status == "READY"


class PinAnalytics(_Frozen):
    """The ``all`` split of ``GET /pins/{id}/analytics`` over the (clamped) range."""

    start_date: dt.date
    end_date: dt.date
    daily: tuple[DailyMetrics, ...]
    summary: dict[str, float]
    lifetime: dict[str, int] = Field(default_factory=dict)


class AccountAnalytics(_Frozen):
    """The ``all`` split of ``GET /user_account/analytics`` over the (clamped) range."""

    start_date: dt.date
    end_date: dt.date
    daily: tuple[DailyMetrics, ...]
    summary: dict[str, float]
