"""The emulator on its own: CLI start-up, seeds, admin API, faults, media store, paging."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp
import pytest
from codiv_pinterest import PinterestClient, ServerError
from codiv_pinterest.emulator import EmulatorConfig
from codiv_pinterest.testing import EmulatorAdmin, RunningEmulator


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _emulator_command() -> list[str]:
    script = Path(sys.executable).with_name("codiv-pinterest-emulator")
    assert script.exists(), "the console script is installed with the package"
    return [str(script)]


def _get_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=1) as resp:
        return json.loads(resp.read())


def _wait_for(url: str, proc: subprocess.Popen[bytes], limit: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < limit:
        assert proc.poll() is None, "the emulator exited"
        try:
            _get_json(url)
            return time.monotonic() - started
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.01)
    raise AssertionError(f"no answer from {url} within {limit} s")


def test_cli_starts_and_answers_within_a_second(tmp_path: Path) -> None:
    seed = tmp_path / "seed.json"
    seed.write_text(
        json.dumps(
            {
                "users": [
                    {"username": "cli_user", "boards": [{"name": "Cats"}], "generated_boards": 2}
                ],
                "tokens": [{"access_token": "pina_cli_token", "username": "cli_user"}],
            }
        )
    )
    # Best of two starts: one retry absorbs a machine busy with other test processes.
    timings = []
    for attempt in range(2):
        port = _free_port()
        proc = subprocess.Popen(
            [*_emulator_command(), "--host", "127.0.0.1", "--port", str(port), "--seed", str(seed)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            timings.append(_wait_for(f"http://127.0.0.1:{port}/_emulator/health", proc, 5.0))
            if timings[-1] < 1.0 or attempt == 1:
                break
        except BaseException:
            proc.terminate()
            proc.wait(timeout=5)
            raise
        proc.terminate()
        proc.wait(timeout=5)
    try:
        assert min(timings) < 1.0, f"took {timings} s to answer"
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v5/boards",
            headers={"Authorization": "Bearer pina_cli_token"},
        )
        with urllib.request.urlopen(request, timeout=1) as resp:
            boards = json.loads(resp.read())
        assert [b["name"] for b in boards["items"]] == ["Cats", "Board 2", "Board 3"]
    finally:
        proc.terminate()
        proc.wait(timeout=5)


async def test_faults_are_scoped_by_method_and_path(
    client: PinterestClient, token: str, admin: EmulatorAdmin
) -> None:
    await admin.add_fault(kind="error", method="POST", path="/v5/pins", status=500)
    await client.list_boards(token)
    await client.get_user_account(token)
    faults = await admin.call("GET", "/faults")
    assert faults["items"][0]["fired"] == 0
    await admin.clear_faults()
    assert (await admin.call("GET", "/faults"))["items"] == []


async def test_error_share_is_deterministic_for_a_random_seed(
    client: PinterestClient, token: str, admin: EmulatorAdmin
) -> None:
    await admin.add_fault(kind="error", path="/v5/user_account", probability=0.5)
    failures = 0
    for _ in range(60):
        try:
            await client.get_user_account(token)
        except ServerError:
            failures += 1
    assert 15 <= failures <= 45
    assert (await admin.call("GET", "/faults"))["items"][0]["fired"] == failures


async def test_latency_is_added(client: PinterestClient, token: str, admin: EmulatorAdmin) -> None:
    fault_id = await admin.add_fault(kind="latency", path="/v5/user_account", seconds=0.3)
    started = time.monotonic()
    await client.get_user_account(token)
    assert time.monotonic() - started >= 0.3
    await admin.call("DELETE", f"/faults/{fault_id}")
    started = time.monotonic()
    await client.get_user_account(token)
    assert time.monotonic() - started < 0.3


async def test_forced_rate_limit_and_per_app_limits(
    client: PinterestClient, admin: EmulatorAdmin
) -> None:
    a = (await admin.mint_token("codiv_demo", client_id="app-a"))["access_token"]
    other = await admin.create_user("second")
    b = (await admin.mint_token("second", client_id="app-a"))["access_token"]
    await admin.call("PUT", "/rate-limits", {"per_app": {"org_read": 3}})
    await client.get_user_account(a)
    await client.get_user_account(b)
    await client.get_user_account(a)
    with pytest.raises(Exception, match="rate limit"):
        await client.get_user_account(b)  # the app's budget is shared by its users
    stats = await admin.stats()
    assert stats["rate_limited"] == {other["id"]: {"org_read": 1}}
    await admin.call("PUT", "/rate-limits", {"per_app": {}})
    await admin.add_fault(kind="rate_limit", path="/v5/user_account", count=1)
    with pytest.raises(Exception, match="rate limit"):
        await client.get_user_account(a)
    await client.get_user_account(a)


async def test_reset_restores_the_seed(
    client: PinterestClient, token: str, admin: EmulatorAdmin, emulator: RunningEmulator
) -> None:
    board = await client.create_board(token, "temporary")
    await admin.create_user("temp_user")
    await admin.add_fault(kind="latency", seconds=0.01)
    await admin.advance_clock(3600)
    await admin.reset()
    assert [u["username"] for u in (await admin.call("GET", "/users"))["items"]] == ["codiv_demo"]
    assert board.id not in emulator.state.boards
    assert (await admin.call("GET", "/faults"))["items"] == []
    assert (await admin.stats())["operations"] == {}


async def test_admin_pins_filters_by_user_and_board(
    client: PinterestClient, token: str, admin: EmulatorAdmin
) -> None:
    from codiv_pinterest import ImageUrlSource, PinCreate

    boards = await client.list_boards(token)
    for board in boards[:2]:
        await client.create_pin(
            token,
            PinCreate(
                board_id=board.id, media_source=ImageUrlSource(url="https://x.example/a.png")
            ),
        )
    assert len(await admin.pins(username="codiv_demo")) == 2
    assert len(await admin.pins(board_id=boards[0].id)) == 1
    stats = await admin.stats()
    assert stats["pins_created_by_board"] == {boards[0].id: 1, boards[1].id: 1}


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(media={"seconds": 0.0, "failure_share": 0.0})


async def _register(http: aiohttp.ClientSession, emulator: RunningEmulator, token: str) -> dict:  # type: ignore[type-arg]
    async with http.post(
        f"{emulator.api_base_url}/media",
        json={"media_type": "video"},
        headers={"Authorization": f"Bearer {token}"},
    ) as resp:
        assert resp.status == 201
        return await resp.json()  # type: ignore[no-any-return]


async def test_media_store_checks_the_form(
    http: aiohttp.ClientSession, emulator: RunningEmulator, token: str, video_file: Path
) -> None:
    registration = await _register(http, emulator, token)
    params = registration["upload_parameters"]
    data = video_file.read_bytes()

    file_first = aiohttp.FormData()
    file_first.add_field("file", data, filename="clip.mp4")
    for key, value in params.items():
        file_first.add_field(key, value)
    missing = aiohttp.FormData()
    for key, value in params.items():
        if key != "policy":
            missing.add_field(key, value)
    missing.add_field("file", data, filename="clip.mp4")
    no_file = aiohttp.FormData(default_to_multipart=True)
    for key, value in params.items():
        no_file.add_field(key, value)
    no_file.add_field("note", "x")

    for form, expected in ((file_first, "last field"), (missing, "policy"), (no_file, "file")):
        async with http.post(registration["upload_url"], data=form) as resp:
            assert resp.status == 400
            assert expected in await resp.text()
    assert emulator.state.media[registration["media_id"]].uploaded_at is None


async def test_media_failure_share_fails_processing(
    client: PinterestClient, token: str, admin: EmulatorAdmin, video_file: Path
) -> None:
    await admin.call("PUT", "/media-processing", {"failure_share": 1.0})
    registration = await client.register_media(token)
    await client.upload_media(registration, video_file)
    assert (await client.get_media(token, registration.media_id)).status == "failed"


async def test_expired_upload_policy_is_refused(
    client: PinterestClient, token: str, admin: EmulatorAdmin, video_file: Path
) -> None:
    from codiv_pinterest import MediaUploadFailed

    registration = await client.register_media(token)
    await admin.advance_clock(2 * 3600)
    with pytest.raises(MediaUploadFailed) as info:
        await client.upload_media(registration, video_file)
    assert info.value.status == 403


async def test_unchecked_requests_get_pinterest_errors(
    http: aiohttp.ClientSession, unchecked_emulator: RunningEmulator
) -> None:
    admin = EmulatorAdmin(http, unchecked_emulator.base_url)
    token = (await admin.mint_token("codiv_demo"))["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    base = unchecked_emulator.api_base_url
    cases = [
        ("GET", f"{base}/boards?page_size=251", None, 400),
        ("GET", f"{base}/boards?bookmark=garbage", None, 400),
        ("POST", f"{base}/pins", {"board_id": "1", "note": "removed in 5.20"}, 400),
        ("POST", f"{base}/media", {"media_type": "image"}, 400),
        ("GET", f"{base}/media/123", None, 404),
        ("GET", f"{base}/nothing-here", None, 404),
    ]
    for method, url, body, status in cases:
        async with http.request(method, url, json=body, headers=headers) as resp:
            assert resp.status == status, (url, await resp.text())
            answer = await resp.json()
            assert set(answer) >= {"code", "message"}
            assert resp.headers["x-pinterest-rid"]


async def test_ambiguous_upload_is_applied_but_unanswered(
    client: PinterestClient, token: str, admin: EmulatorAdmin, video_file: Path
) -> None:
    from codiv_pinterest import PinterestTransportError

    registration = await client.register_media(token)
    await admin.add_fault(kind="ambiguous", path="/_emulator/media-upload/.*", count=1)
    with pytest.raises(PinterestTransportError) as info:
        await client.upload_media(registration, video_file)
    assert info.value.outcome_unknown
    assert (await client.get_media(token, registration.media_id)).status == "succeeded"
