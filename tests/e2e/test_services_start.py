"""All four services start as processes and report health and readiness truthfully."""

from __future__ import annotations

import asyncio
import signal

import aiohttp
import pytest
from codiv_testsupport import free_port

pytestmark = pytest.mark.e2e

SERVICES = ("codiv-gateway", "codiv-scheduler", "codiv-publisher", "codiv-auth")


async def test_all_services_become_ready_and_stop_cleanly(spawn) -> None:  # type: ignore[no-untyped-def]
    procs = [spawn(cmd) for cmd in SERVICES]
    await asyncio.gather(*(p.wait_status("/readyz", 200, timeout=30) for p in procs))
    async with aiohttp.ClientSession() as session:
        for p in procs:
            async with session.get(p.base_url + "/healthz") as resp:
                assert resp.status == 200
            async with session.get(p.base_url + "/readyz") as resp:
                body = await resp.json()
                assert body["checks"] == {"database": "ok", "broker": "ok"}
            async with session.get(p.base_url + "/metrics") as resp:
                text = await resp.text()
                assert resp.status == 200
                assert "codiv_ready 1.0" in text
                assert "codiv_http_requests_total" in text
    for p in procs:
        assert p.stop(signal.SIGTERM, timeout=20) == 0, p.logs()[-2000:]
        assert "service_stopped" in p.logs()


async def test_service_with_unreachable_database_is_alive_but_not_ready(spawn) -> None:  # type: ignore[no-untyped-def]
    dead_db = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
    proc = spawn("codiv-scheduler", DATABASE_URL=dead_db)
    await proc.wait_status("/healthz", 200, timeout=20)
    await proc.wait_status("/readyz", 503, timeout=5)
    async with aiohttp.ClientSession() as session, session.get(proc.base_url + "/readyz") as resp:
        assert resp.status == 503
        assert (await resp.json())["status"] == "unavailable"
    assert "dependencies_unavailable" in proc.logs()
    assert "nowhere" in proc.logs() or "127.0.0.1" in proc.logs()


async def test_gateway_refuses_to_start_with_the_published_dev_state_secret(spawn) -> None:  # type: ignore[no-untyped-def]
    proc = spawn("codiv-gateway", OAUTH_STATE_SECRET="codiv-dev-oauth-state-secret")
    assert proc.proc is not None
    code = await asyncio.to_thread(proc.proc.wait, 30)
    assert code == 2
    assert "OAUTH_STATE_SECRET" in proc.logs()
    empty = spawn("codiv-gateway", OAUTH_STATE_SECRET="")
    assert empty.proc is not None
    assert await asyncio.to_thread(empty.proc.wait, 30) == 2
    dev = spawn("codiv-gateway", OAUTH_STATE_SECRET="", CODIV_DEV_MODE="1")
    await dev.wait_status("/healthz", 200, timeout=20)
