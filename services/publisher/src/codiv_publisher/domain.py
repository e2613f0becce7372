"""Pure publishing rules: what pin to create, how to read Pinterest's errors, when to retry."""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from enum import StrEnum

from codiv_common.events import PostContent, PostError
from codiv_pinterest import errors as pe
from codiv_pinterest.models import (
    CarouselItem,
    ImageUrlSource,
    MultipleImageUrlsSource,
    Pin,
    PinCreate,
    VideoSource,
)

PIN_URL = "https://www.pinterest.com/pin/{pin_id}/"


class PinKind(StrEnum):
    IMAGE = "image"
    MULTI_IMAGE = "multi_image"
    VIDEO = "video"


class InvalidContent(ValueError):
    """The post cannot become a pin whatever we do (caught before calling Pinterest)."""


def pin_kind(content: PostContent) -> PinKind:
    """Which kind of pin a post becomes; raises :class:`InvalidContent` when none fits."""
    count = len(content.media_urls)
    if content.post_type == "video":
        if count != 1:
            raise InvalidContent(f"a video post takes exactly one video URL, got {count}")
        return PinKind.VIDEO
    if count == 1:
        return PinKind.IMAGE
    if 2 <= count <= 5:
        return PinKind.MULTI_IMAGE
    raise InvalidContent(f"an image post takes 1 to 5 image URLs, got {count}")


def cover_key_frame_seconds(content: PostContent) -> int:
    """Pinterest takes whole seconds; round down (a late frame is still inside the video)."""
    return int(content.cover_key_frame_time or 0)


def build_pin(content: PostContent, media_id: str | None = None) -> PinCreate:
    """The ``POST /pins`` body for this post, every customer field passed as given."""
    kind = pin_kind(content)
    source: ImageUrlSource | MultipleImageUrlsSource | VideoSource
    if kind is PinKind.IMAGE:
        source = ImageUrlSource(url=content.media_urls[0])
    elif kind is PinKind.MULTI_IMAGE:
        source = MultipleImageUrlsSource(
            items=tuple(CarouselItem(url=u) for u in content.media_urls)
        )
    else:
        if media_id is None:
            raise ValueError("a video pin needs the uploaded media id")
        if content.cover_image_url:
            source = VideoSource(media_id=media_id, cover_image_url=content.cover_image_url)
        else:
            source = VideoSource(
                media_id=media_id, cover_image_key_frame_time=cover_key_frame_seconds(content)
            )
    try:
        return PinCreate(
            board_id=content.board_id,
            board_section_id=content.board_section_id,
            media_source=source,
            title=content.title,
            description=content.description,
            link=content.link,
            alt_text=content.alt_text,
        )
    except ValueError as exc:
        raise InvalidContent(str(exc)) from exc


_MEDIA_TYPES = {
    PinKind.IMAGE: {"image"},
    PinKind.MULTI_IMAGE: {"multiple_images", "multiple_mixed", "image"},
    PinKind.VIDEO: {"video"},
}


def pin_matches(pin: Pin, content: PostContent, since: dt.datetime) -> bool:
    """Is ``pin`` the one an earlier, unanswered create of this post made?

    Same board and section, created at or after ``since`` (the attempt's start minus
    clock skew), the same title, description, link and alt text, and the same kind of
    media. Pinterest returns no client reference, so identical twin posts on one
    board cannot be told apart; the caller makes sure one pin is adopted once.
    """
    if pin.created_at is None or pin.created_at < since:
        return False
    if pin.board_id is not None and pin.board_id != content.board_id:
        return False
    if (pin.board_section_id or None) != (content.board_section_id or None):
        return False
    for ours, theirs in (
        (content.title, pin.title),
        (content.description, pin.description),
        (content.link, pin.link),
        (content.alt_text, pin.alt_text),
    ):
        if (ours or None) != (theirs or None):
            return False
    media_type = pin.media_type
    return media_type is None or media_type in _MEDIA_TYPES[pin_kind(content)]


def pin_url(pin_id: str) -> str:
    return PIN_URL.format(pin_id=pin_id)


# ---------------------------------------------------------------- outcomes of errors


class Action(StrEnum):
    RETRY = "retry"  # transient: try again later through the scheduler
    FAIL = "fail"  # permanent: fail the post now
    REAUTH = "reauth"  # 401: get a fresh token and try once more


@dataclass(frozen=True)
class Verdict:
    """What to do about one failed Pinterest call."""

    action: Action
    code: str
    message: str
    outcome_unknown: bool = False  # a create may have happened: reconcile before retrying
    retry_after: float | None = None
    rate_limited: bool = False


def _pinterest_says(err: pe.PinterestError) -> str:
    text = (err.message or "").strip()
    return f' Pinterest said: "{text}"' if text else ""


def classify(err: pe.PinterestError, *, during_create: bool) -> Verdict:
    """Read a Pinterest error as a customer-facing code and what to do next."""
    says = _pinterest_says(err)
    if isinstance(err, pe.RateLimited):
        return Verdict(
            Action.RETRY,
            "pinterest_rate_limited",
            "Pinterest asked us to slow down for this account (rate limit).",
            retry_after=err.retry_after,
            rate_limited=True,
        )
    if isinstance(err, pe.PinterestTransportError):
        return Verdict(
            Action.RETRY,
            "pinterest_unreachable",
            "Pinterest did not answer in time.",
            outcome_unknown=during_create and err.outcome_unknown,
        )
    if isinstance(err, pe.TrialAccessRestricted):
        return Verdict(
            Action.FAIL,
            "pinterest_trial_access",
            "Pinterest refused to publish because the app only has Trial access: pins can "
            "be created in Pinterest's sandbox only until Standard access is granted." + says,
        )
    if isinstance(err, pe.Unauthorized):
        if err.missing_scope:
            return Verdict(
                Action.FAIL,
                "pinterest_missing_permission",
                "The Pinterest account was connected without permission to create pins. "
                "Reconnect the Pinterest account and approve every permission." + says,
            )
        return Verdict(Action.REAUTH, "pinterest_reauth_required", reauth_message())
    if isinstance(err, pe.MediaRejected):
        return Verdict(
            Action.FAIL,
            "pinterest_media_rejected",
            "Pinterest rejected the image (too small or unreadable). Use a larger, valid "
            "JPEG or PNG image." + says,
        )
    if isinstance(err, pe.BoardNotFound):
        return Verdict(
            Action.FAIL,
            "pinterest_board_not_found",
            "The board does not exist on this Pinterest account any more. Choose another "
            "board and schedule the post again." + says,
        )
    if isinstance(err, pe.SectionNotFound):
        return Verdict(
            Action.FAIL,
            "pinterest_section_not_found",
            "The board section does not exist on that board any more. Choose another "
            "section or none, and schedule the post again." + says,
        )
    if isinstance(err, pe.Forbidden):
        return Verdict(
            Action.FAIL,
            "pinterest_forbidden",
            "Pinterest does not allow this account to publish to that board." + says,
        )
    if isinstance(err, pe.MediaNotFound):
        # The upload vanished on Pinterest's side: upload again.
        return Verdict(
            Action.RETRY,
            "pinterest_media_lost",
            "Pinterest lost the uploaded video; it is uploaded again.",
        )
    if isinstance(err, pe.NotFound):
        return Verdict(
            Action.FAIL, "pinterest_not_found", "Pinterest could not find the target." + says
        )
    if isinstance(err, pe.InvalidRequest):
        return Verdict(
            Action.FAIL,
            "pinterest_invalid_request",
            "Pinterest rejected the post's content. Check the media URLs, link and texts." + says,
        )
    if isinstance(err, pe.MediaUploadFailed):
        return Verdict(
            Action.RETRY,
            "pinterest_upload_failed",
            "Uploading the video to Pinterest failed.",
        )
    if isinstance(err, pe.InvalidResponse):
        return Verdict(
            Action.RETRY,
            "pinterest_invalid_response",
            "Pinterest answered with something unreadable.",
            outcome_unknown=during_create,
        )
    # ServerError, Conflict and anything unexpected: transient. A 5xx on a create may
    # still have created the pin.
    return Verdict(
        Action.RETRY,
        "pinterest_unavailable",
        "Pinterest is having trouble right now" + _status(err) + ".",
        outcome_unknown=during_create and not isinstance(err, pe.Conflict),
    )


def _status(err: pe.PinterestError) -> str:
    return f" (HTTP {err.status})" if err.status else ""


def reauth_message() -> str:
    return (
        "Pinterest no longer accepts this account's authorization. Reconnect the "
        "Pinterest account for this profile, then schedule the post again."
    )


def exhausted_error(last: PostError, attempts: int) -> PostError:
    """The error a post fails with once its transient failures used up the budget."""
    return PostError(
        code=last.code,
        message=f"Gave up after {attempts} failed attempts. Last problem: {last.message}",
        retryable=True,
    )


# ---------------------------------------------------------------- timing


def backoff_delay(
    failures: int, base: float, cap: float, rng: random.Random | None = None
) -> float:
    """Exponential backoff with 'equal jitter': half fixed, half random.

    ``failures`` counts from 1. With base 15 s and cap 900 s, ten attempts span about
    an hour.
    """
    exp: float = min(cap, base * (2.0 ** max(0, failures - 1)))
    r: float = (rng or random).random()
    return exp / 2 + r * exp / 2


def media_poll_delay(polls: int, initial: float, cap: float) -> float:
    """Delay before the next media status check: 2 s, 3 s, 4.5 s ... up to ``cap``."""
    delay: float = initial * (1.5 ** max(0, polls))
    return min(cap, delay)


def write_interval(writes_per_minute: float) -> float:
    """Seconds between two writes for one account, with 2% headroom under the limit."""
    return 60.0 / writes_per_minute * 1.02
