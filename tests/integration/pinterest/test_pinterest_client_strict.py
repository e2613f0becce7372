"""Client tests against an emulator seeded with registered apps (strict client auth)."""

from __future__ import annotations

import aiohttp
import pytest
from codiv_pinterest import (
    ImageUrlSource,
    PinCreate,
    PinterestClient,
    TokenRefused,
    TrialAccessRestricted,
    build_authorize_url,
)
from codiv_pinterest.emulator import EmulatorConfig, Seed, SeedApp, SeedBoard, SeedUser
from codiv_pinterest.testing import EmulatorAdmin, RunningEmulator

REDIRECT = "https://app.example/callback"


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(
        seed=Seed(
            users=[SeedUser(username="strict_user", boards=[SeedBoard(name="Only")])],
            apps=[
                SeedApp(client_id="app-1", client_secret="s3cret", redirect_uris=[REDIRECT]),
                SeedApp(client_id="trial-app", client_secret="t", trial_access=True),
            ],
        )
    )


async def _code(http: aiohttp.ClientSession, emulator: RunningEmulator, redirect: str) -> str:
    url = build_authorize_url(emulator.oauth_url, "app-1", redirect, ["pins:read"], "st")
    async with http.get(url, allow_redirects=False) as resp:
        assert resp.status == 302, await resp.text()
        return resp.headers["Location"].split("code=")[1].split("&")[0]


async def test_strict_client_authentication(
    client: PinterestClient, http: aiohttp.ClientSession, emulator: RunningEmulator
) -> None:
    code = await _code(http, emulator, REDIRECT)
    with pytest.raises(TokenRefused) as info:
        await client.exchange_code("app-1", "wrong", code, REDIRECT)
    assert info.value.status == 401
    assert info.value.client_authentication_failed
    with pytest.raises(TokenRefused) as mismatch:
        await client.exchange_code("app-1", "s3cret", code, REDIRECT + "/other")
    assert mismatch.value.oauth_error == "invalid_grant"
    tokens = await client.exchange_code("app-1", "s3cret", code, REDIRECT)
    assert tokens.scopes == {"pins:read"}


async def test_unregistered_redirect_or_client_is_refused_at_authorize(
    http: aiohttp.ClientSession, emulator: RunningEmulator
) -> None:
    bad_redirect = build_authorize_url(
        emulator.oauth_url, "app-1", "https://evil.example/cb", ["pins:read"], "st"
    )
    unknown_client = build_authorize_url(
        emulator.oauth_url, "nobody", REDIRECT, ["pins:read"], "st"
    )
    for url in (bad_redirect, unknown_client):
        async with http.get(url, allow_redirects=False) as resp:
            assert resp.status == 400


async def test_denied_consent_redirects_with_an_error(
    http: aiohttp.ClientSession, emulator: RunningEmulator
) -> None:
    url = build_authorize_url(emulator.oauth_url, "app-1", REDIRECT, ["pins:read"], "st")
    async with http.get(url + "&emulator_deny=1", allow_redirects=False) as resp:
        assert resp.status == 302
        assert resp.headers["Location"] == f"{REDIRECT}?error=access_denied&state=st"


async def test_trial_app_may_not_create_pins(client: PinterestClient, admin: EmulatorAdmin) -> None:
    token = (await admin.mint_token("strict_user", client_id="trial-app"))["access_token"]
    board_id = (await client.list_boards(token))[0].id
    pin = PinCreate(board_id=board_id, media_source=ImageUrlSource(url="https://cdn.example/a.jpg"))
    with pytest.raises(TrialAccessRestricted) as info:
        await client.create_pin(token, pin)
    assert info.value.code == 29
    assert info.value.status == 403
