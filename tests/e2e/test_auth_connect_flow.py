"""End to end: codiv-auth as a process, a browser-like client following the OAuth redirect
chain through the Pinterest emulator, 600 boards in account.boards_synced, no secret leaked."""

from __future__ import annotations

import uuid
from typing import Any

import aio_pika
import aiohttp
import asyncpg
import pytest
from codiv_auth.domain import make_state
from codiv_common import broker as b
from codiv_common.crypto import KeyRing
from codiv_common.events import Event, decode_event
from codiv_pinterest.client import build_authorize_url
from codiv_pinterest.emulator.config import EmulatorConfig, SeedBoard, SeedUser
from codiv_pinterest.testing import run_emulator
from codiv_testsupport import free_port, wait_until

pytestmark = pytest.mark.e2e

SCOPES = ("boards:read", "boards:write", "pins:read", "pins:write", "user_accounts:read")


async def test_connect_through_the_emulator_with_600_boards(spawn, broker, database_url) -> None:  # type: ignore[no-untyped-def]
    received: list[Event] = []
    connection = await aio_pika.connect_robust(broker.url)
    config = EmulatorConfig(
        seed={"users": [], "apps": [{"client_id": "e2e-app", "client_secret": "e2e-secret"}]}
    )
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        topo = b.Topology(exchange=broker.exchange, queue_prefix=broker.queue_prefix)
        await b.declare_exchanges(channel, topo)
        queue = await b.declare_queue(channel, topo, b.QueueSpec("test", ["account.*"]))

        async def on_message(message: Any) -> None:
            received.append(decode_event(message.body))
            await message.ack()

        await queue.consume(on_message)
        async with run_emulator(config) as emulator, aiohttp.ClientSession() as http:
            user = emulator.state.add_user(
                SeedUser(
                    username="bigbrand",
                    boards=[SeedBoard(name="Recipes", sections=["Salads", "Desserts"])],
                    generated_boards=599,
                )
            )
            port = free_port()
            state_secret = "e2e-state-secret"
            auth = spawn(
                "codiv-auth",
                name="auth",
                PORT=str(port),
                TOKEN_ENCRYPTION_KEYS=f"k1:{KeyRing.generate_key()}",
                INTERNAL_SERVICE_TOKEN="e2e-service-token",
                OAUTH_STATE_SECRET=state_secret,
                PINTEREST_CLIENT_ID="e2e-app",
                PINTEREST_CLIENT_SECRET="e2e-secret",
                PINTEREST_API_URL=emulator.api_base_url,
                PINTEREST_OAUTH_URL=emulator.oauth_url,
                OAUTH_REDIRECT_URI=f"http://127.0.0.1:{port}/oauth/pinterest/callback",
                OAUTH_SUCCESS_URL=f"{emulator.base_url}/_emulator/health",
            )
            await auth.wait_status("/readyz", 200, timeout=30)

            ws, profile = uuid.uuid4(), uuid.uuid4()
            state = make_state(state_secret.encode(), ws, profile, "Big Brand")
            url = build_authorize_url(
                emulator.oauth_url,
                "e2e-app",
                f"http://127.0.0.1:{port}/oauth/pinterest/callback",
                SCOPES,
                state,
            )
            async with http.get(url) as resp:  # follows every redirect, like a browser
                assert resp.status == 200, await resp.text()
                hops = [str(h.url).split("?")[0] for h in resp.history]
                final = str(resp.url)
            assert hops == [
                emulator.oauth_url,
                f"http://127.0.0.1:{port}/oauth/pinterest/callback",
            ]
            assert final.startswith(f"{emulator.base_url}/_emulator/health?")
            assert "status=connected" in final
            account_id = dict(p.split("=") for p in final.split("?")[1].split("&"))["account_id"]

            def synced() -> list[Any]:
                return [e for e in received if e.type == "account.boards_synced"]

            await wait_until(synced, timeout=30)
            event = synced()[0]
            assert event.workspace_id == ws
            assert event.payload.account_id == account_id
            assert len({bd.id for bd in event.payload.boards}) == 600
            recipes = next(bd for bd in event.payload.boards if bd.name == "Recipes")
            assert sorted(s.name for s in recipes.sections) == ["Desserts", "Salads"]
            connected = [e for e in received if e.type == "account.connected"]
            assert connected[0].payload.pinterest_user_id == user.id

            # the publisher's call
            async with http.get(
                f"{auth.base_url}/internal/v1/accounts/{account_id}/access-token",
                headers={"Authorization": "Bearer e2e-service-token"},
            ) as r:
                assert r.status == 200
                assert (await r.json())["access_token"] in emulator.state.tokens

            secrets = list(emulator.state.tokens)
            assert auth.stop() == 0
        logs = auth.logs()
        assert "account_connected" in logs
        for secret in secrets:
            assert secret not in logs
        db = await asyncpg.connect(database_url)
        try:
            dump = str(await db.fetch("SELECT * FROM auth.accounts"))
            dump += str(await db.fetch("SELECT * FROM auth.outbox"))
        finally:
            await db.close()
        for secret in secrets:
            assert secret not in dump
    finally:
        await connection.close()


async def test_auth_refuses_to_start_without_an_encryption_key(spawn) -> None:  # type: ignore[no-untyped-def]
    proc = spawn("codiv-auth", name="auth-nokey", TOKEN_ENCRYPTION_KEYS="", CODIV_DEV_MODE="0")
    assert proc.proc is not None
    assert proc.proc.wait(30) == 2
    logs = proc.logs()
    assert "TOKEN_ENCRYPTION_KEYS" in logs
    assert "CODIV_DEV_MODE=1" in logs


async def test_auth_starts_in_dev_mode_with_a_loud_warning(spawn) -> None:  # type: ignore[no-untyped-def]
    proc = spawn("codiv-auth", name="auth-dev", CODIV_DEV_MODE="1", TOKEN_ENCRYPTION_KEYS="")
    await proc.wait_status("/readyz", 200, timeout=30)
    assert "DEV_MODE_INSECURE_SETTING" in proc.logs()
    assert "EPHEMERAL" in proc.logs()


async def test_gateway_copy_has_all_600_boards_after_connect(client) -> None:  # type: ignore[no-untyped-def]
    ws = await client.create_workspace("big-boards", plan="pro")
    key = ws["api_key"]
    await client.emulator("POST", "/users", {"username": "bigger", "generated_boards": 600})
    profile = await client.connect_profile(key, "big", emulator_user="bigger")
    assert profile["pinterest"]["status"] == "connected"

    async def all_boards() -> Any:
        got = await client.api("GET", "/v1/profiles/big/boards", key)
        return got if len(got["data"]) == 600 else None

    boards = await wait_until(all_boards, timeout=30, interval=0.3)
    assert len({bd["id"] for bd in boards["data"]}) == 600
