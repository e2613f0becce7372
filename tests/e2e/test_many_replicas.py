"""Many replicas of every service against one PostgreSQL and RabbitMQ (Kubernetes shape).

2 gateways, 2 schedulers, 3 publishers, 2 auth services: 2,000 posts sent round-robin
across the gateways are each published exactly once, and when every access token dies
mid-run each account's token is refreshed exactly once although five publisher/auth
processes see the 401s. Also: SIGTERM to a publisher under load finishes its in-flight
work within the grace period, acks nothing unfinished, and loses nothing.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import time
from collections import Counter

import aiohttp
import pytest
from codiv_devtools.system import Client, System, SystemConfig
from codiv_testsupport import wait_until

pytestmark = pytest.mark.e2e

PROFILES = ("alpha", "beta", "gamma", "delta")


async def _prepare(client: Client, system: System) -> str:
    await client.emulator(
        "PUT", "/rate-limits", {"per_user": {"org_write": 100000, "org_read": 100000}}
    )
    for name in PROFILES:
        await client.emulator(
            "POST", "/users", {"username": f"user_{name}", "boards": [{"name": "Main"}]}
        )
    ws = await client.create_workspace("replicas", plan="pro")
    for name in PROFILES:
        await client.connect_profile(ws["api_key"], name, emulator_user=f"user_{name}")
    return ws["api_key"]


async def _post_all(
    session: aiohttp.ClientSession, gateways: list[str], key: str, count: int, tag: str
) -> list[str]:
    ids: list[str] = []
    targets = itertools.cycle(gateways)
    sem = asyncio.Semaphore(32)

    async def one(i: int, gateway: str) -> None:
        body = {
            "profile_name": PROFILES[i % len(PROFILES)],
            "platforms": ["pinterest"],
            "post_type": "image",
            "title": f"{tag} {i}",
            "media_urls": [f"https://cdn.example.com/{tag}/{i}.jpg"],
            "pinterest_board_id": "Main",
        }
        async with (
            sem,
            session.post(
                f"{gateway}/v1/posts",
                json=body,
                headers={"Authorization": f"Bearer {key}", "Idempotency-Key": f"{tag}-{i}"},
            ) as resp,
        ):
            assert resp.status == 202, await resp.text()
            ids.append((await resp.json())["id"])

    await asyncio.gather(*(one(i, next(targets)) for i in range(count)))
    return ids


async def _final_statuses(client: Client, key: str) -> dict[str, dict]:  # type: ignore[type-arg]
    export = await client.api("GET", "/v1/posts/export?format=json", key)
    return {p["id"]: p for p in export}


async def test_two_thousand_posts_through_many_replicas_once_each(
    system_config: SystemConfig,
) -> None:
    system_config.replicas = {"gateway": 2, "scheduler": 2, "publisher": 3, "auth": 2}
    system_config.extra_env.update({"RATE_LIMIT_PRO": "1000000", "WRITES_PER_MINUTE": "100000"})
    system = System(system_config)
    async with aiohttp.ClientSession() as session:
        client = Client(system, session)
        try:
            await system.start(timeout=90)
            key = await _prepare(client, system)
            gateways = system.replica_urls("gateway")
            started = time.monotonic()
            first = await _post_all(session, gateways, key, 1000, "first")
            # every access token dies mid-run: the next publish of each account gets a 401
            for name in PROFILES:
                await client.emulator("POST", "/tokens/expire", {"username": f"user_{name}"})
            second = await _post_all(session, gateways, key, 1000, "second")
            ids = first + second

            async def done() -> dict | None:  # type: ignore[type-arg]
                posts = await _final_statuses(client, key)
                finished = [p for p in posts.values() if p["status"] in ("published", "failed")]
                return posts if len(finished) >= len(ids) else None

            posts = await wait_until(done, timeout=240, interval=2.0)
            elapsed = time.monotonic() - started
            statuses = Counter(posts[i]["status"] for i in ids)
            assert statuses == Counter({"published": 2000}), statuses
            pins = (await client.emulator("GET", "/pins"))["items"]
            titles = Counter(p["title"] for p in pins)
            assert len(pins) == 2000
            assert max(titles.values()) == 1, [t for t, n in titles.items() if n > 1][:5]
            stats = await client.emulator("GET", "/stats")
            refreshes = stats["token_refreshes"]
            per_user = {u: n for u, n in refreshes.items() if u}
            assert len(per_user) == len(PROFILES), stats
            assert set(per_user.values()) == {1}, per_user
            print(f"2000 posts through 2/2/3/2 replicas in {elapsed:.1f}s")
        finally:
            system.stop()


async def test_sigterm_to_a_publisher_under_load_finishes_inflight_and_loses_nothing(
    system_config: SystemConfig,
) -> None:
    system_config.replicas = {"publisher": 2}
    system_config.extra_env.update(
        {"RATE_LIMIT_PRO": "1000000", "WRITES_PER_MINUTE": "100000", "SHUTDOWN_TIMEOUT": "15"}
    )
    system = System(system_config)
    async with aiohttp.ClientSession() as session:
        client = Client(system, session)
        try:
            await system.start(timeout=90)
            key = await _prepare(client, system)
            # every create takes 1 s on Pinterest, so SIGTERM lands mid-call
            await client.emulator(
                "POST",
                "/faults",
                {"kind": "latency", "method": "POST", "path": "^/v5/pins$", "seconds": 1.0},
            )
            ids = await _post_all(session, system.replica_urls("gateway"), key, 120, "term")
            await asyncio.sleep(2.0)
            victim = system.processes["publisher"][0]
            assert victim.proc is not None
            t0 = time.monotonic()
            code = await asyncio.to_thread(victim.stop, signal.SIGTERM, 30)
            took = time.monotonic() - t0
            assert code == 0, victim.logs()[-3000:]
            assert took < 15 + 5, f"shutdown took {took:.1f}s"
            logs = victim.logs()
            assert "service_stopped" in logs
            assert "consumer_stop_timeout" not in logs  # in-flight work finished in time

            async def done() -> dict | None:  # type: ignore[type-arg]
                posts = await _final_statuses(client, key)
                ok = all(posts.get(i, {}).get("status") == "published" for i in ids)
                return posts if ok else None

            await wait_until(done, timeout=180, interval=2.0)
            pins = (await client.emulator("GET", "/pins"))["items"]
            titles = Counter(p["title"] for p in pins)
            assert len(pins) == len(ids)
            assert max(titles.values()) == 1
        finally:
            system.stop()
