"""Pure publishing rules: pin bodies, error verdicts, reconciliation matching, timing."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import pytest
from codiv_common.events import PostContent, PostError
from codiv_pinterest import errors as pe
from codiv_pinterest.models import Pin
from codiv_publisher import domain
from codiv_publisher.domain import Action, InvalidContent, PinKind

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def content(**overrides: Any) -> PostContent:
    values: dict[str, Any] = {
        "post_type": "image",
        "pinterest_account_id": "acc",
        "board_id": "111",
        "board_section_id": "222",
        "title": "Title",
        "description": "Desc",
        "link": "https://example.com/x",
        "alt_text": "Alt",
        "media_urls": ["https://img.example.com/1.jpg"],
    }
    values.update(overrides)
    return PostContent(**values)


def test_image_pin_carries_every_field_as_given() -> None:
    body = domain.build_pin(content()).model_dump(mode="json", exclude_none=True)
    assert body == {
        "board_id": "111",
        "board_section_id": "222",
        "title": "Title",
        "description": "Desc",
        "link": "https://example.com/x",
        "alt_text": "Alt",
        "media_source": {"source_type": "image_url", "url": "https://img.example.com/1.jpg"},
    }


def test_two_to_five_images_make_a_carousel_in_order() -> None:
    urls = [f"https://img.example.com/{i}.jpg" for i in range(5)]
    body = domain.build_pin(content(media_urls=urls)).model_dump(mode="json", exclude_none=True)
    assert body["media_source"] == {
        "source_type": "multiple_image_urls",
        "items": [{"url": u} for u in urls],
    }
    assert domain.pin_kind(content(media_urls=urls[:2])) is PinKind.MULTI_IMAGE


def test_video_cover_is_the_url_or_a_key_frame_defaulting_to_zero() -> None:
    video = content(post_type="video", media_urls=["https://v.example.com/v.mp4"])
    source = domain.build_pin(video, "555").model_dump(mode="json", exclude_none=True)
    assert source["media_source"] == {
        "source_type": "video_id",
        "media_id": "555",
        "cover_image_key_frame_time": 0,
    }
    frame = domain.build_pin(video.model_copy(update={"cover_key_frame_time": 3.7}), "555")
    assert frame.media_source.cover_image_key_frame_time == 3  # type: ignore[union-attr]
    cover = video.model_copy(update={"cover_image_url": "https://img.example.com/c.jpg"})
    dumped = domain.build_pin(cover, "555").model_dump(mode="json", exclude_none=True)
    assert dumped["media_source"] == {
        "source_type": "video_id",
        "media_id": "555",
        "cover_image_url": "https://img.example.com/c.jpg",
    }


def test_a_video_needs_its_media_id_and_exactly_one_url() -> None:
    with pytest.raises(ValueError, match="media id"):
        domain.build_pin(content(post_type="video"))
    with pytest.raises(InvalidContent, match="exactly one"):
        domain.pin_kind(content(post_type="video", media_urls=["https://a/1", "https://a/2"]))


@pytest.mark.parametrize(
    ("error", "action", "code"),
    [
        (pe.RateLimited(429, 8, "slow"), Action.RETRY, "pinterest_rate_limited"),
        (pe.ServerError(503, 503, "down"), Action.RETRY, "pinterest_unavailable"),
        (pe.Conflict(409, 409, "busy"), Action.RETRY, "pinterest_unavailable"),
        (
            pe.PinterestTransportError("x", outcome_unknown=True),
            Action.RETRY,
            "pinterest_unreachable",
        ),
        (
            pe.Unauthorized(401, 2, "Authentication failed."),
            Action.REAUTH,
            "pinterest_reauth_required",
        ),
        (pe.Unauthorized(401, 3, "scopes"), Action.FAIL, "pinterest_missing_permission"),
        (pe.TrialAccessRestricted(403, 29, "Trial"), Action.FAIL, "pinterest_trial_access"),
        (pe.MediaRejected(403, 233, "too small"), Action.FAIL, "pinterest_media_rejected"),
        (pe.BoardNotFound(404, 40, "Board not found."), Action.FAIL, "pinterest_board_not_found"),
        (pe.SectionNotFound(404, 2031, "no"), Action.FAIL, "pinterest_section_not_found"),
        (pe.InvalidRequest(400, 1, "bad URL"), Action.FAIL, "pinterest_invalid_request"),
        (pe.Forbidden(403, 7, "no"), Action.FAIL, "pinterest_forbidden"),
        (pe.MediaNotFound(404, 404, "gone"), Action.RETRY, "pinterest_media_lost"),
    ],
)
def test_errors_are_read_as_retry_fail_or_reauth(
    error: pe.PinterestError, action: Action, code: str
) -> None:
    verdict = domain.classify(error, during_create=False)
    assert (verdict.action, verdict.code) == (action, code)
    if action is Action.FAIL and error.message:
        assert error.message in verdict.message  # Pinterest's own words are kept


def test_only_a_create_whose_answer_was_lost_needs_reconciliation() -> None:
    lost = pe.PinterestTransportError("dropped", outcome_unknown=True)
    never_sent = pe.PinterestTransportError("refused", outcome_unknown=False)
    assert domain.classify(lost, during_create=True).outcome_unknown
    assert not domain.classify(lost, during_create=False).outcome_unknown
    assert not domain.classify(never_sent, during_create=True).outcome_unknown
    assert domain.classify(pe.ServerError(502, None, ""), during_create=True).outcome_unknown
    assert not domain.classify(pe.RateLimited(429, 8, ""), during_create=True).outcome_unknown
    limited = domain.classify(pe.RateLimited(429, 8, "", retry_after=12.0), during_create=True)
    assert limited.rate_limited
    assert limited.retry_after == 12.0


def pin(**overrides: Any) -> Pin:
    values: dict[str, Any] = {
        "id": "9",
        "board_id": "111",
        "board_section_id": "222",
        "title": "Title",
        "description": "Desc",
        "link": "https://example.com/x",
        "alt_text": "Alt",
        "created_at": NOW,
        "media": {"media_type": "image"},
    }
    values.update(overrides)
    return Pin(**values)


def test_reconciliation_matches_only_the_same_pin_made_after_the_attempt_began() -> None:
    c = content()
    assert domain.pin_matches(pin(), c, NOW - dt.timedelta(seconds=5))
    assert not domain.pin_matches(pin(created_at=NOW - dt.timedelta(minutes=10)), c, NOW)
    assert not domain.pin_matches(pin(title="Other"), c, NOW)
    assert not domain.pin_matches(pin(link=None), c, NOW)
    assert not domain.pin_matches(pin(board_section_id=None), c, NOW)
    assert not domain.pin_matches(pin(board_id="333"), c, NOW)
    assert not domain.pin_matches(pin(media={"media_type": "video"}), c, NOW)
    assert domain.pin_matches(pin(description=""), content(description=None), NOW)


def test_backoff_grows_exponentially_with_jitter_and_spans_about_an_hour() -> None:
    rng = random.Random(1)
    delays = [domain.backoff_delay(n, 15, 900, rng) for n in range(1, 10)]
    for n, d in enumerate(delays, start=1):
        full = min(900, 15 * 2 ** (n - 1))
        assert full / 2 <= d <= full
    lows = sum(min(900, 15 * 2 ** (n - 1)) / 2 for n in range(1, 10))
    highs = sum(min(900, 15 * 2 ** (n - 1)) for n in range(1, 10))
    assert 1500 < lows < highs < 4000  # ten attempts: between ~30 and ~60 minutes


def test_media_polls_back_off_to_a_cap() -> None:
    assert [round(domain.media_poll_delay(i, 2, 10), 2) for i in range(6)] == [
        2.0,
        3.0,
        4.5,
        6.75,
        10.0,
        10.0,
    ]


def test_write_interval_keeps_under_the_limit() -> None:
    assert domain.write_interval(100) > 0.6
    assert 60 / domain.write_interval(100) < 100


def test_exhausted_error_keeps_the_last_reason() -> None:
    err = domain.exhausted_error(PostError(code="pinterest_unavailable", message="Down."), 10)
    assert err.code == "pinterest_unavailable"
    assert err.retryable
    assert err.message == "Gave up after 10 failed attempts. Last problem: Down."
