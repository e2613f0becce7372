"""PinterestClient against the in-process emulator; every exchange is spec-checked."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
import structlog
from codiv_pinterest import (
    BoardNotFound,
    CarouselItem,
    ImageUrlSource,
    InvalidRequest,
    MediaRejected,
    MultipleImageUrlsSource,
    PinCreate,
    PinNotFound,
    PinterestClient,
    PinterestTransportError,
    RateLimited,
    SectionNotFound,
    ServerError,
    TokenRefused,
    Unauthorized,
    VideoSource,
    build_authorize_url,
)
from codiv_pinterest.testing import EmulatorAdmin, RunningEmulator

SCOPES = ["boards:read", "boards:write", "pins:read", "pins:write", "user_accounts:read"]
REDIRECT = "https://app.example/callback"


def _image_pin(board_id: str, **fields: str | None) -> PinCreate:
    return PinCreate(
        board_id=board_id,
        media_source=ImageUrlSource(url="https://cdn.example/a.jpg"),
        **fields,  # type: ignore[arg-type]
    )


async def _authorize(
    http: aiohttp.ClientSession, emulator: RunningEmulator, state: str, **extra: str
) -> dict[str, list[str]]:
    url = build_authorize_url(emulator.oauth_url, "app-1", REDIRECT, SCOPES, state)
    if extra:
        url += "&" + "&".join(f"{k}={v}" for k, v in extra.items())
    async with http.get(url, allow_redirects=False) as resp:
        assert resp.status == 302
        location = resp.headers["Location"]
    assert location.startswith(REDIRECT + "?")
    return parse_qs(urlsplit(location).query)


async def _first_board(client: PinterestClient, token: str) -> str:
    return (await client.list_boards(token))[0].id


# -- OAuth -------------------------------------------------------------------------


async def test_authorize_exchange_and_use_token(
    client: PinterestClient, http: aiohttp.ClientSession, emulator: RunningEmulator
) -> None:
    answer = await _authorize(http, emulator, "csrf-123")
    assert answer["state"] == ["csrf-123"]
    tokens = await client.exchange_code("app-1", "secret", answer["code"][0], REDIRECT)
    assert tokens.refresh_token
    assert tokens.expires_in > 0
    assert tokens.refresh_token_expires_in
    assert tokens.scopes == set(SCOPES)
    me = await client.get_user_account(tokens.access_token)
    assert me.username == "codiv_demo"
    assert me.board_count == 3
    # A code works once only.
    with pytest.raises(TokenRefused) as info:
        await client.exchange_code("app-1", "secret", answer["code"][0], REDIRECT)
    assert info.value.oauth_error == "invalid_grant"
    assert not info.value.client_authentication_failed


async def test_authorize_as_a_chosen_user(
    client: PinterestClient,
    http: aiohttp.ClientSession,
    emulator: RunningEmulator,
    admin: EmulatorAdmin,
) -> None:
    await admin.create_user("second_user")
    answer = await _authorize(http, emulator, "s", emulator_user="second_user")
    tokens = await client.exchange_code("app-1", "x", answer["code"][0], REDIRECT)
    assert (await client.get_user_account(tokens.access_token)).username == "second_user"
    # The admin API can also set who is "logged in".
    await admin.call("PUT", "/session", {"username": "codiv_demo"})
    answer = await _authorize(http, emulator, "s")
    tokens = await client.exchange_code("app-1", "x", answer["code"][0], REDIRECT)
    assert (await client.get_user_account(tokens.access_token)).username == "codiv_demo"


async def test_refresh_rotates_the_refresh_token(
    client: PinterestClient, admin: EmulatorAdmin, emulator: RunningEmulator
) -> None:
    first = await admin.mint_token("codiv_demo", client_id="app-1")
    second = await client.refresh_token("app-1", "s", first["refresh_token"])
    assert second.refresh_token not in (None, first["refresh_token"])
    assert second.access_token != first["access_token"]
    assert second.refresh_token_expires_in
    third = await client.refresh_token("app-1", "s", str(second.refresh_token))
    await client.get_user_account(third.access_token)
    # The spent refresh token is refused like Pinterest refuses a dead grant.
    with pytest.raises(TokenRefused) as info:
        await client.refresh_token("app-1", "s", first["refresh_token"])
    assert info.value.status == 400
    assert info.value.oauth_error == "invalid_grant"
    assert not info.value.retryable
    user_id = emulator.state.user_by_name("codiv_demo").id
    assert (await admin.stats())["token_refreshes"] == {user_id: 3}


async def test_refresh_can_narrow_scopes(client: PinterestClient, admin: EmulatorAdmin) -> None:
    first = await admin.mint_token("codiv_demo", client_id="app-1")
    narrowed = await client.refresh_token(
        "app-1", "s", first["refresh_token"], scopes=["pins:read", "boards:read"]
    )
    assert narrowed.scopes == {"pins:read", "boards:read"}
    with pytest.raises(Unauthorized) as info:
        await client.get_user_account(narrowed.access_token)
    assert info.value.missing_scope


async def test_revoked_and_expired_tokens(
    client: PinterestClient, admin: EmulatorAdmin, emulator: RunningEmulator
) -> None:
    tokens = await admin.mint_token("codiv_demo", client_id="app-1")
    await client.get_user_account(tokens["access_token"])
    assert await admin.revoke(username="codiv_demo") >= 2
    with pytest.raises(Unauthorized) as info:
        await client.get_user_account(tokens["access_token"])
    assert info.value.status == 401
    assert info.value.code == 2
    assert not info.value.missing_scope
    with pytest.raises(TokenRefused) as refused:
        await client.refresh_token("app-1", "s", tokens["refresh_token"])
    assert refused.value.oauth_error == "invalid_grant"
    # Access tokens expire on the emulator's clock.
    await admin.call("PUT", "/token-lifetimes", {"access_token_seconds": 60})
    fresh = await admin.mint_token("codiv_demo")
    await client.get_user_account(fresh["access_token"])
    await admin.advance_clock(61)
    with pytest.raises(Unauthorized):
        await client.get_user_account(fresh["access_token"])


# -- boards and sections -------------------------------------------------------------


async def test_list_boards_follows_bookmarks_over_600_boards(
    client: PinterestClient, admin: EmulatorAdmin
) -> None:
    user = await admin.create_user("big_account", generated_boards=600)
    token = (await admin.mint_token("big_account"))["access_token"]
    boards = await client.list_boards(token, page_size=250)
    assert len(boards) == 600
    assert len({b.id for b in boards}) == 600
    assert boards[0].name == "Board 1"
    assert boards[-1].name == "Board 600"
    assert all(b.owner and b.owner.username == "big_account" for b in boards)
    stats = await admin.stats()
    assert stats["operations"]["boards/list"] == 3  # 250 + 250 + 100
    assert user["board_count"] == 600


async def test_boards_and_sections(client: PinterestClient, token: str) -> None:
    board = await client.create_board(token, "Spring ideas", description="Flowers")
    assert board.id.isdigit()
    assert board.privacy == "PUBLIC"
    assert board.created_at is not None
    assert board.created_at.tzinfo is not None
    assert (await client.get_board(token, board.id)).name == "Spring ideas"
    made = [await client.create_board_section(token, board.id, f"S{i}") for i in range(3)]
    sections = await client.list_board_sections(token, board.id, page_size=2)
    assert [s.id for s in sections] == [s.id for s in made]
    with pytest.raises(InvalidRequest):
        await client.create_board(token, "Spring ideas")  # duplicate name
    with pytest.raises(BoardNotFound) as info:
        await client.get_board(token, "999999")
    assert info.value.code == 40
    assert info.value.request_id


async def test_another_users_board_is_not_found(
    client: PinterestClient, admin: EmulatorAdmin, token: str
) -> None:
    other = await admin.create_user("other_user", boards=[{"name": "Private stuff"}])
    other_token = (await admin.mint_token("other_user"))["access_token"]
    other_board = (await client.list_boards(other_token))[0].id
    assert other["board_count"] == 1
    with pytest.raises(BoardNotFound):
        await client.get_board(token, other_board)
    with pytest.raises(BoardNotFound) as info:
        await client.create_pin(token, _image_pin(other_board))
    assert info.value.status == 404
    assert info.value.code == 40
    with pytest.raises(BoardNotFound):
        await client.list_board_sections(token, other_board)


# -- pins ----------------------------------------------------------------------------


async def test_image_pin_lifecycle(
    client: PinterestClient, token: str, admin: EmulatorAdmin
) -> None:
    board_id = await _first_board(client, token)
    section = (await client.list_board_sections(token, board_id))[0]
    pin = await client.create_pin(
        token,
        _image_pin(
            board_id,
            board_section_id=section.id,
            title="Green salad",
            description="Crunchy",
            link="https://shop.example/salad",
            alt_text="A bowl of salad",
        ),
    )
    assert pin.id.isdigit()
    assert pin.board_id == board_id
    assert pin.board_section_id == section.id
    assert pin.media_type == "image"
    assert pin.creative_type == "REGULAR"
    assert pin.link == "https://shop.example/salad"
    assert pin.alt_text == "A bowl of salad"
    fetched = await client.get_pin(token, pin.id)
    assert fetched == pin
    assert [p.id for p in await client.list_board_pins(token, board_id)] == [pin.id]
    await client.delete_pin(token, pin.id)
    with pytest.raises(PinNotFound) as info:
        await client.get_pin(token, pin.id)
    assert info.value.code == 50
    with pytest.raises(PinNotFound):
        await client.delete_pin(token, pin.id)
    stats = await admin.stats()
    assert sum(stats["pins_created"].values()) == 1
    assert sum(stats["pins_deleted"].values()) == 1


async def test_board_pins_are_paged_newest_first(client: PinterestClient, token: str) -> None:
    board_id = await _first_board(client, token)
    made = [await client.create_pin(token, _image_pin(board_id, title=f"p{i}")) for i in range(5)]
    listed = [p async for p in client.iter_board_pins(token, board_id, page_size=2)]
    assert [p.id for p in listed] == [p.id for p in reversed(made)]


async def test_carousel_pin(client: PinterestClient, token: str) -> None:
    board_id = await _first_board(client, token)
    items = (
        CarouselItem(url="https://cdn.example/1.jpg", title="One", link="https://a.example"),
        CarouselItem(url="https://cdn.example/2.jpg", description="Two"),
        CarouselItem(url="https://cdn.example/3.jpg"),
    )
    pin = await client.create_pin(
        token, PinCreate(board_id=board_id, media_source=MultipleImageUrlsSource(items=items))
    )
    assert pin.media_type == "multiple_images"
    assert pin.creative_type == "CAROUSEL"
    assert pin.media is not None
    assert [i["title"] for i in pin.media["items"]] == ["One", None, None]


async def test_pin_errors(client: PinterestClient, token: str) -> None:
    board_id = await _first_board(client, token)
    with pytest.raises(SectionNotFound) as section_info:
        await client.create_pin(token, _image_pin(board_id, board_section_id="123"))
    assert section_info.value.code == 2031
    bad_link = _image_pin(board_id, link="not a url")
    with pytest.raises(InvalidRequest) as invalid:
        await client.create_pin(token, bad_link)
    assert invalid.value.status == 400
    assert not invalid.value.retryable
    broken = PinCreate(
        board_id=board_id, media_source=ImageUrlSource(url="https://broken.invalid/x.jpg")
    )
    with pytest.raises(MediaRejected) as rejected:
        await client.create_pin(token, broken)
    assert rejected.value.code == 235


# -- video ---------------------------------------------------------------------------


async def test_video_flow(
    client: PinterestClient, token: str, video_file: Path, admin: EmulatorAdmin
) -> None:
    await admin.call("PUT", "/media-processing", {"seconds": 30})
    registration = await client.register_media(token)
    assert registration.upload_url.endswith(f"/_emulator/media-upload/{registration.media_id}")
    assert "policy" in registration.upload_parameters
    assert (await client.get_media(token, registration.media_id)).status == "registered"
    await client.upload_media(registration, video_file)
    status = await client.get_media(token, registration.media_id)
    assert status.status == "processing"
    assert not status.done
    board_id = await _first_board(client, token)
    video = VideoSource(
        media_id=registration.media_id, cover_image_url="https://cdn.example/cover.jpg"
    )
    with pytest.raises(InvalidRequest):  # not processed yet
        await client.create_pin(token, PinCreate(board_id=board_id, media_source=video))
    await admin.advance_clock(31)
    assert (await client.get_media(token, registration.media_id)).status == "succeeded"
    pin = await client.create_pin(
        token, PinCreate(board_id=board_id, title="Clip", media_source=video)
    )
    assert pin.media_type == "video"
    assert pin.creative_type == "VIDEO"
    key_frame = VideoSource(media_id=registration.media_id, cover_image_key_frame_time=3)
    await client.create_pin(token, PinCreate(board_id=board_id, media_source=key_frame))


async def test_broken_video_upload_fails_processing(
    client: PinterestClient, token: str, tmp_path: Path
) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video at all")
    registration = await client.register_media(token)
    await client.upload_media(registration, junk)
    status = await client.get_media(token, registration.media_id)
    assert status.status == "failed"
    assert status.done


async def test_upload_sends_no_pinterest_credentials(
    client: PinterestClient, token: str, video_file: Path, emulator: RunningEmulator
) -> None:
    # The emulator's media store refuses any Authorization header, as S3 would; the
    # upload succeeding proves none was sent. Check the refusal too.
    registration = await client.register_media(token)
    form = aiohttp.FormData()
    for key, value in registration.upload_parameters.items():
        form.add_field(key, value)
    form.add_field("file", video_file.read_bytes(), filename="clip.mp4")
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as leaky,
        leaky.post(registration.upload_url, data=form) as resp,
    ):
        assert resp.status == 400
    await client.upload_media(registration, video_file)
    assert emulator.state.media[registration.media_id].uploaded_at is not None


# -- faults and limits ---------------------------------------------------------------


async def test_rate_limited_writes(
    client: PinterestClient, token: str, admin: EmulatorAdmin, emulator: RunningEmulator
) -> None:
    await admin.call("PUT", "/rate-limits", {"per_user": {"org_write": 2, "org_read": 1000}})
    await client.create_board(token, "one")
    await client.create_board(token, "two")
    with pytest.raises(RateLimited) as info:
        await client.create_board(token, "three")
    assert info.value.status == 429
    assert info.value.code == 8
    assert info.value.retryable
    assert info.value.retry_after is None
    await client.list_boards(token)  # org_read is a different bucket
    await admin.call("PUT", "/rate-limits", {"send_headers": True})
    await client.create_board(token, "after reset")  # a config change resets the windows
    await client.create_board(token, "four")
    with pytest.raises(RateLimited) as with_header:
        await client.create_board(token, "five")
    assert with_header.value.retry_after is not None
    assert 0 < with_header.value.retry_after <= 60
    await admin.advance_clock(61)
    await client.create_board(token, "next window")
    user_id = emulator.state.user_by_name("codiv_demo").id
    stats = await admin.stats()
    assert stats["rate_limited"] == {user_id: {"org_write": 2}}
    assert stats["rate_limited_total"] == 2


async def test_server_errors_are_retryable(
    client: PinterestClient, token: str, admin: EmulatorAdmin
) -> None:
    await admin.add_fault(kind="error", method="GET", path="/v5/user_account", count=1)
    with pytest.raises(ServerError) as info:
        await client.get_user_account(token)
    assert info.value.status == 503
    assert info.value.retryable
    await client.get_user_account(token)  # count=1: the fault is gone


async def test_ambiguous_create_reports_unknown_outcome_and_pin_exists(
    client: PinterestClient, token: str, admin: EmulatorAdmin
) -> None:
    board_id = await _first_board(client, token)
    await admin.add_fault(kind="ambiguous", method="POST", path="/v5/pins", count=1)
    with pytest.raises(PinterestTransportError) as info:
        await client.create_pin(token, _image_pin(board_id, title="maybe"))
    assert info.value.outcome_unknown
    assert info.value.retryable
    # The pin WAS created: a publisher must reconcile instead of posting again.
    pins = await admin.pins(board_id=board_id)
    assert [p["title"] for p in pins] == ["maybe"]
    found = [p async for p in client.iter_board_pins(token, board_id) if p.title == "maybe"]
    assert len(found) == 1


async def test_timeouts_on_writes_and_reads(
    http: aiohttp.ClientSession, emulator: RunningEmulator, token: str, admin: EmulatorAdmin
) -> None:
    impatient = PinterestClient(http, emulator.api_base_url, timeout=0.2)
    board_id = await _first_board(impatient, token)
    await admin.add_fault(kind="timeout", path="/v5/pins", seconds=2, count=1)
    await admin.add_fault(kind="timeout", path="/v5/boards/.*", seconds=2, count=1)
    started = asyncio.get_running_loop().time()
    with pytest.raises(PinterestTransportError) as write:
        await impatient.create_pin(token, _image_pin(board_id))
    assert write.value.outcome_unknown
    with pytest.raises(PinterestTransportError) as read:
        await impatient.get_board(token, board_id)
    assert not read.value.outcome_unknown
    assert asyncio.get_running_loop().time() - started < 1.5
    assert await admin.pins() == []  # a plain timeout applies nothing


async def test_connection_refused_is_a_known_outcome(http: aiohttp.ClientSession) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = PinterestClient(http, f"http://127.0.0.1:{port}/v5", timeout=2)
    with pytest.raises(PinterestTransportError) as info:
        await client.create_pin("pina_x", _image_pin("1"))
    assert not info.value.outcome_unknown
    assert info.value.retryable


async def test_errors_are_logged_with_request_id_and_without_secrets(
    client: PinterestClient, token: str, admin: EmulatorAdmin
) -> None:
    first = await admin.mint_token("codiv_demo", client_id="app-1")
    with structlog.testing.capture_logs() as logs:
        with pytest.raises(BoardNotFound):
            await client.get_board(token, "424242")
        await client.refresh_token("app-1", "client-secret-value", first["refresh_token"])
        with pytest.raises(TokenRefused):
            await client.refresh_token("app-1", "client-secret-value", first["refresh_token"])
    assert len(logs) == 2
    assert logs[0]["request_id"]
    assert logs[0]["status"] == 404
    dumped = repr(logs)
    for secret in (token, first["refresh_token"], "client-secret-value", "Bearer"):
        assert secret not in dumped


# -- analytics -----------------------------------------------------------------------


async def test_pin_analytics_grow_with_age_and_respect_the_window(
    client: PinterestClient, token: str, admin: EmulatorAdmin, emulator: RunningEmulator
) -> None:
    board_id = await _first_board(client, token)
    pin = await client.create_pin(token, _image_pin(board_id))
    assert pin.created_at is not None
    created = pin.created_at.date()
    await admin.advance_clock(10 * 86400)
    today = emulator.state.clock.now().date()
    report = await client.get_pin_analytics(
        token,
        pin.id,
        created - dt.timedelta(days=2),
        today,
        ["IMPRESSION", "SAVE", "SAVE_RATE"],
        today=today,
    )
    by_status = [d.data_status for d in report.daily]
    assert by_status[:2] == ["BEFORE_PIN_CREATED"] * 2
    assert by_status[-2:] == ["PROCESSING"] * 2
    assert set(by_status[2:-2]) == {"READY"}
    impressions = [d.metrics["IMPRESSION"] for d in report.daily[2:]]
    assert impressions == sorted(impressions)
    assert impressions[-1] > impressions[0]
    assert report.summary["IMPRESSION"] == sum(impressions)
    assert 0 < report.summary["SAVE_RATE"] < 1
    assert set(report.lifetime) == {"TOTAL_COMMENTS", "TOTAL_REACTIONS"}
    again = await client.get_pin_analytics(
        token, pin.id, created, today, ["IMPRESSION"], today=today
    )
    assert [d.metrics["IMPRESSION"] for d in again.daily] == impressions
    # A range reaching a year back is clamped to the last 89 days.
    await admin.advance_clock(200 * 86400)
    token = (await admin.mint_token("codiv_demo"))["access_token"]  # the old one expired
    today = emulator.state.clock.now().date()
    long_range = await client.get_pin_analytics(
        token, pin.id, today - dt.timedelta(days=365), today, ["PIN_CLICK"], today=today
    )
    assert long_range.start_date == today - dt.timedelta(days=89)
    assert len(long_range.daily) == 90


async def test_the_emulator_refuses_ranges_beyond_90_days(
    http: aiohttp.ClientSession, unchecked_emulator: RunningEmulator
) -> None:
    admin = EmulatorAdmin(http, unchecked_emulator.base_url)
    token = (await admin.mint_token("codiv_demo"))["access_token"]
    today = unchecked_emulator.state.clock.now().date()
    query = {
        "start_date": (today - dt.timedelta(days=120)).isoformat(),
        "end_date": today.isoformat(),
    }
    async with http.get(
        f"{unchecked_emulator.api_base_url}/user_account/analytics",
        params=query,
        headers={"Authorization": f"Bearer {token}"},
    ) as resp:
        assert resp.status == 400
        assert "90 days" in (await resp.json())["message"]


async def test_account_analytics(
    client: PinterestClient, token: str, admin: EmulatorAdmin, emulator: RunningEmulator
) -> None:
    board_id = await _first_board(client, token)
    for i in range(3):
        await client.create_pin(token, _image_pin(board_id, title=f"p{i}"))
    await admin.advance_clock(5 * 86400)
    today = emulator.state.clock.now().date()
    report = await client.get_account_analytics(
        token, today - dt.timedelta(days=7), today, today=today
    )
    assert len(report.daily) == 8
    assert report.daily[0].metrics["IMPRESSION"] == 0  # before any pin existed
    assert report.daily[-1].metrics["IMPRESSION"] > 0
    assert report.summary["ENGAGEMENT"] == sum(d.metrics["ENGAGEMENT"] for d in report.daily)
    assert report.daily[-1].data_status == "PROCESSING"
    assert report.daily[0].ready
    only = await client.get_account_analytics(
        token, today - dt.timedelta(days=1), today, ["IMPRESSION"], today=today
    )
    assert set(only.summary) == {"IMPRESSION"}
