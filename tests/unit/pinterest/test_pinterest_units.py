"""Pure pieces of codiv_pinterest: error mapping, models, date clamping, faults, analytics."""

from __future__ import annotations

import datetime as dt
import json
import random
from urllib.parse import parse_qs, urlsplit

import pytest
from codiv_pinterest import (
    BoardNotFound,
    CarouselItem,
    Conflict,
    Forbidden,
    ImageUrlSource,
    InvalidRequest,
    MediaRejected,
    MultipleImageUrlsSource,
    NotFound,
    Pin,
    PinCreate,
    PinNotFound,
    PinterestError,
    PinterestTransportError,
    RateLimited,
    SectionNotFound,
    ServerError,
    TokenRefused,
    TokenResponse,
    TrialAccessRestricted,
    Unauthorized,
    VideoSource,
    build_authorize_url,
    clamp_analytics_range,
)
from codiv_pinterest.client import _error_for, _retry_after
from codiv_pinterest.emulator import analytics
from codiv_pinterest.emulator.faults import FaultBook, FaultRule
from codiv_pinterest.emulator.state import ApiError, Clock, _page
from pydantic import ValidationError


def _err(
    status: int,
    body: object,
    headers: dict[str, str] | None = None,
    *,
    not_found: type[NotFound] = NotFound,
    token_endpoint: bool = False,
) -> PinterestError:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return _error_for(
        status,
        raw,
        headers or {"x-pinterest-rid": "rid-1"},
        not_found=not_found,
        token_endpoint=token_endpoint,
    )


@pytest.mark.parametrize(
    ("status", "code", "expected", "retryable"),
    [
        (429, 8, RateLimited, True),
        (401, 2, Unauthorized, False),
        (401, 3, Unauthorized, False),
        (403, 29, TrialAccessRestricted, False),
        (401, 29, TrialAccessRestricted, False),
        (403, 235, MediaRejected, False),
        (403, 1, Forbidden, False),
        (404, 40, BoardNotFound, False),
        (404, 2031, SectionNotFound, False),
        (404, 50, PinNotFound, False),
        (404, 404, NotFound, False),
        (400, 1, InvalidRequest, False),
        (409, 409, Conflict, True),
        (500, 500, ServerError, True),
        (503, 0, ServerError, True),
    ],
)
def test_error_mapping(status: int, code: int, expected: type, retryable: bool) -> None:
    error = _err(status, {"code": code, "message": "m"})
    assert type(error) is expected
    assert error.status == status
    assert error.code == code
    assert error.request_id == "rid-1"
    assert error.retryable is retryable


def test_not_found_hint_and_token_endpoint() -> None:
    assert type(_err(404, {"code": 404, "message": "x"}, not_found=PinNotFound)) is PinNotFound
    refused = _err(
        400, {"code": 400, "message": "bad", "error": "invalid_grant"}, token_endpoint=True
    )
    assert isinstance(refused, TokenRefused)
    assert isinstance(refused, Unauthorized)
    assert refused.oauth_error == "invalid_grant"
    assert not refused.client_authentication_failed
    client = _err(401, {"code": 2, "message": "Authentication failed."}, token_endpoint=True)
    assert isinstance(client, TokenRefused)
    assert client.client_authentication_failed
    assert isinstance(_err(429, {"code": 8, "message": "x"}, token_endpoint=True), RateLimited)


def test_non_json_error_bodies() -> None:
    error = _err(502, b"<html>Bad gateway</html>")
    assert type(error) is ServerError
    assert error.code is None
    assert "Bad gateway" in error.message


def test_retry_after_parsing() -> None:
    assert _retry_after({}) is None
    assert _retry_after({"Retry-After": "12"}) == 12.0
    assert _retry_after({"X-RateLimit-Reset": "7"}) == 7.0
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)).strftime(
        "%a, %d %b %Y %H:%M:%S GMT"
    )
    parsed = _retry_after({"Retry-After": future})
    assert parsed is not None
    assert 25 <= parsed <= 31
    error = _err(429, {"code": 8, "message": "slow down"}, {"Retry-After": "3"})
    assert isinstance(error, RateLimited)
    assert error.retry_after == 3.0


def test_transport_error_flags() -> None:
    error = PinterestTransportError("dropped", outcome_unknown=True)
    assert error.outcome_unknown
    assert error.retryable
    assert error.status is None


def test_authorize_url() -> None:
    url = build_authorize_url(
        "https://www.pinterest.com/oauth/",
        "1234",
        "https://app.example/cb?x=1",
        ["boards:read", "pins:write"],
        "st/ate",
    )
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == "https://www.pinterest.com/oauth/"
    assert parse_qs(parts.query) == {
        "client_id": ["1234"],
        "redirect_uri": ["https://app.example/cb?x=1"],
        "response_type": ["code"],
        "scope": ["boards:read,pins:write"],
        "state": ["st/ate"],
    }
    assert "&state=" in build_authorize_url("http://e/oauth/?emulator_user=a", "c", "r", [], "s")


def test_clamp_analytics_range() -> None:
    today = dt.date(2025, 6, 30)
    assert clamp_analytics_range(dt.date(2025, 6, 1), dt.date(2025, 6, 10), today) == (
        dt.date(2025, 6, 1),
        dt.date(2025, 6, 10),
    )
    start, end = clamp_analytics_range(dt.date(2024, 1, 1), dt.date(2025, 12, 31), today)
    assert end == today
    assert start == today - dt.timedelta(days=89)
    with pytest.raises(ValueError, match="no analytics"):
        clamp_analytics_range(dt.date(2024, 1, 1), dt.date(2024, 2, 1), today)


def test_pin_create_limits_and_media_sources() -> None:
    source = ImageUrlSource(url="https://x/a.jpg")
    with pytest.raises(ValidationError):
        PinCreate(board_id="1", media_source=source, title="t" * 101)
    with pytest.raises(ValidationError):
        PinCreate(board_id="user/board", media_source=source)
    with pytest.raises(ValidationError):
        MultipleImageUrlsSource(items=(CarouselItem(url="https://x/1.jpg"),))
    with pytest.raises(ValidationError, match="exactly one"):
        VideoSource(media_id="12")
    with pytest.raises(ValidationError, match="exactly one"):
        VideoSource(media_id="12", cover_image_url="https://x/c.jpg", cover_image_key_frame_time=1)
    pin = PinCreate(
        board_id="1",
        media_source=VideoSource(media_id="12", cover_image_key_frame_time=0),
        alt_text="a",
    )
    assert pin.model_dump(mode="json", exclude_none=True) == {
        "board_id": "1",
        "alt_text": "a",
        "media_source": {
            "source_type": "video_id",
            "media_id": "12",
            "cover_image_key_frame_time": 0,
        },
    }


def test_naive_timestamps_are_utc() -> None:
    pin = Pin.model_validate({"id": "1", "created_at": "2022-10-13T01:40:29"})
    assert pin.created_at == dt.datetime(2022, 10, 13, 1, 40, 29, tzinfo=dt.UTC)
    shifted = Pin.model_validate({"id": "1", "created_at": "2022-10-13T03:40:29+02:00"})
    assert shifted.created_at == pin.created_at


def test_token_response_hides_secrets_and_splits_scopes() -> None:
    tokens = TokenResponse(
        access_token="pina_SECRET",
        refresh_token="pinr.SECRET",
        expires_in=10,
        scope="boards:read,pins:read",
    )
    assert "SECRET" not in repr(tokens)
    assert tokens.scopes == {"boards:read", "pins:read"}


def test_fault_book_scoping_count_and_probability() -> None:
    book = FaultBook(random.Random(1))
    book.add(FaultRule(kind="error", method="POST", path="/v5/pins", count=2))
    book.add(FaultRule(kind="latency", path="/v5/.*", seconds=0.5))
    assert book.plan("GET", "/v5/pins").action is None
    assert book.plan("GET", "/v5/pins").latency == 0.5
    assert book.plan("POST", "/v5/pins/1").action is None  # full-path match only
    first = book.plan("POST", "/v5/pins")
    assert first.action is not None
    assert first.latency == 0.5
    assert book.plan("POST", "/v5/pins").action is not None
    assert book.plan("POST", "/v5/pins").action is None  # count spent, rule removed
    assert [f["kind"] for f in book.as_json()] == ["latency"]
    shares = FaultBook(random.Random(7))
    shares.add(FaultRule(kind="error", probability=0.25))
    hits = sum(shares.plan("GET", "/v5/boards").action is not None for _ in range(1000))
    assert 200 <= hits <= 300


def test_page_bookmarks() -> None:
    items = list(range(7))
    chunk, bookmark = _page(items, "s", None, 3)
    assert list(chunk) == [0, 1, 2]
    assert bookmark is not None
    chunk, bookmark = _page(items, "s", bookmark, 3)
    assert list(chunk) == [3, 4, 5]
    chunk, last = _page(items, "s", bookmark, 3)
    assert list(chunk) == [6]
    assert last is None
    with pytest.raises(ApiError):
        _page(items, "other-scope", bookmark, 3)
    with pytest.raises(ApiError):
        _page(items, "s", None, 251)


def test_clock_advances() -> None:
    start = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    clock = Clock(start)
    assert start <= clock.now() < start + dt.timedelta(seconds=5)
    clock.advance(86400)
    assert clock.now() >= start + dt.timedelta(days=1)


def test_analytics_are_deterministic_and_grow() -> None:
    created = dt.date(2025, 3, 1)
    today = dt.date(2025, 3, 20)
    one = analytics.pin_report("111", created, dt.date(2025, 2, 27), today, today, ["IMPRESSION"])
    two = analytics.pin_report("111", created, dt.date(2025, 2, 27), today, today, ["IMPRESSION"])
    assert one == two
    other = analytics.pin_report("222", created, created, today, today, ["IMPRESSION"])
    assert other["summary_metrics"] != one["summary_metrics"]
    rows = one["daily_metrics"]
    assert [r["data_status"] for r in rows[:2]] == ["BEFORE_PIN_CREATED"] * 2
    values = [r["metrics"]["IMPRESSION"] for r in rows[2:]]
    assert values == sorted(values)
    assert values[-1] > values[0]
    account = analytics.account_report(
        [("111", created), ("222", created)], created, today, today, ["IMPRESSION", "SAVE_RATE"]
    )
    first_day = account["daily_metrics"][0]["metrics"]["IMPRESSION"]
    assert (
        first_day
        == rows[2]["metrics"]["IMPRESSION"] + other["daily_metrics"][0]["metrics"]["IMPRESSION"]
    )
    assert 0 < account["summary_metrics"]["SAVE_RATE"] < 1
