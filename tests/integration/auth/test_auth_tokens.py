"""Tokens: the internal API, refresh ahead of expiry, refusals, transient failures, replicas."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest
from codiv_common.http import METRICS_KEY
from codiv_pinterest.emulator.faults import FaultRule
from codiv_testsupport import wait_until

from .conftest import (
    SERVICE_TOKEN,
    Auth,
    Probe,
    RunAuth,
    account_id_of,
    add_user,
    refresh_count,
)

pytestmark = pytest.mark.integration


def lifetimes(auth: Auth, access: int) -> None:
    auth.emulator.state.set_token_lifetimes({"access_token_seconds": access})


async def generation(db: asyncpg.Pool, account_id: str) -> int:
    value = await db.fetchval(
        "SELECT token_generation FROM auth.accounts WHERE id = $1", uuid.UUID(account_id)
    )
    return int(value)


async def test_internal_api_needs_the_service_token_and_a_known_account(
    run_auth: RunAuth,
) -> None:
    async with run_auth() as auth:
        add_user(auth.emulator, "u1")
        account_id = account_id_of(await auth.connect(uuid.uuid4(), uuid.uuid4(), "u1"))
        url = f"{auth.base_url}/internal/v1/accounts/{account_id}/access-token"
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": SERVICE_TOKEN}):
            async with auth.http.get(url, headers=headers) as r:
                assert r.status == 401
                body = await r.json()
                assert body["code"] == "unauthorized"
                assert "access_token" not in body
        for unknown in (str(uuid.uuid4()), "not-a-uuid"):
            status, body = await auth.token(unknown)
            assert (status, body["code"]) == (404, "account_not_found")
        status, body = await auth.token(account_id)
        assert status == 200


async def test_an_expired_token_is_refreshed_before_it_is_handed_out(
    run_auth: RunAuth, db: asyncpg.Pool
) -> None:
    async with run_auth(refresh_interval=3600, access_token_min_validity=0.2) as auth:
        user = add_user(auth.emulator, "u2")
        lifetimes(auth, 2)
        account_id = account_id_of(await auth.connect(uuid.uuid4(), uuid.uuid4(), "u2"))
        _, first = await auth.token(account_id)
        _, again = await auth.token(account_id)
        assert again["access_token"] == first["access_token"]
        assert refresh_count(auth.emulator, user) == 0
        await asyncio.sleep(2.1)
        status, fresh = await auth.token(account_id)
        assert status == 200
        assert fresh["access_token"] != first["access_token"]
        assert fresh["expires_at"] > first["expires_at"]
        assert refresh_count(auth.emulator, user) == 1
        assert await generation(db, account_id) == 2


async def test_invalidate_refreshes_once_and_coalesces_a_burst(run_auth: RunAuth) -> None:
    async with run_auth(invalidate_coalesce_seconds=5) as auth:
        user = add_user(auth.emulator, "u3")
        account_id = account_id_of(await auth.connect(uuid.uuid4(), uuid.uuid4(), "u3"))
        _, before = await auth.token(account_id)
        # a token issued seconds ago is not refreshed again by a 401 (burst protection)
        _, same = await auth.token(account_id, invalidate=True)
        assert same["access_token"] == before["access_token"]
        assert refresh_count(auth.emulator, user) == 0
    async with run_auth(invalidate_coalesce_seconds=0) as auth:
        auth.emulator.state.faults.add(
            FaultRule(kind="latency", method="POST", path="/v5/oauth/token", seconds=0.3)
        )
        results = await asyncio.gather(*(auth.token(account_id, invalidate=True) for _ in range(5)))
        assert all(status == 200 for status, _ in results), results
        # concurrent invalidations wait for the one refresh in flight instead of racing it
        assert refresh_count(auth.emulator, user) == 1
        assert len({body["access_token"] for _, body in results}) == 1
        assert results[0][1]["access_token"] != before["access_token"]


async def test_invalidate_naming_the_refused_token_is_exact(run_auth: RunAuth) -> None:
    """Regression: within the coalescing window a 401 on the *current* token used to get
    that same token back, which the publisher reads as "needs reauth" and fails the post.
    With the refused token's hash auth refreshes exactly when that token is current."""
    async with run_auth(invalidate_coalesce_seconds=60) as auth:
        user = add_user(auth.emulator, "u-exact")
        account_id = account_id_of(await auth.connect(uuid.uuid4(), uuid.uuid4(), "u-exact"))
        _, first = await auth.token(account_id)
        status, second = await auth.token(
            account_id, invalidate=True, rejected=first["access_token"]
        )
        assert status == 200
        assert second["access_token"] != first["access_token"]
        assert refresh_count(auth.emulator, user) == 1
        # a late 401 on the old token: the newer token comes back, no second refresh
        status, third = await auth.token(
            account_id, invalidate=True, rejected=first["access_token"]
        )
        assert (status, third["access_token"]) == (200, second["access_token"])
        assert refresh_count(auth.emulator, user) == 1


async def test_a_refused_refresh_marks_needs_reauth_and_nothing_retries_it(
    run_auth: RunAuth, probe: Probe, db: asyncpg.Pool
) -> None:
    ws, profile = uuid.uuid4(), uuid.uuid4()
    async with run_auth(invalidate_coalesce_seconds=0, refresh_interval=0.2) as auth:
        user = add_user(auth.emulator, "u4")
        account_id = account_id_of(await auth.connect(ws, profile, "u4"))
        auth.emulator.state.revoke(user_id=user)
        status, body = await auth.token(account_id, invalidate=True)
        assert status == 409
        assert body["code"] == "needs_reauth"
        assert "reconnect" in body["detail"].lower()
        assert body["account_id"] == account_id
        event = (await probe.wait_for("account.needs_reauth"))[0]
        assert event.workspace_id == ws
        assert event.payload.account_id == account_id
        assert event.payload.profile_id == profile
        assert "invalid_grant" in event.payload.reason
        assert (await auth.token(account_id))[0] == 409
        attempts = refresh_count(auth.emulator, user)
        await db.execute("UPDATE auth.accounts SET refresh_due_at = now() - interval '1 hour'")
        await asyncio.sleep(1.0)
        assert refresh_count(auth.emulator, user) == attempts  # never retried
        assert len(probe.of_type("account.needs_reauth")) == 1
        # reconnecting brings it back
        assert account_id_of(await auth.connect(ws, profile, "u4")) == account_id
        status, _ = await auth.token(account_id)
        assert status == 200


async def test_transient_refresh_failures_retry_with_backoff(
    run_auth: RunAuth, db: asyncpg.Pool
) -> None:
    async with run_auth(invalidate_coalesce_seconds=0, refresh_interval=0.1) as auth:
        user = add_user(auth.emulator, "u5")
        lifetimes(auth, 3600)
        account_id = account_id_of(await auth.connect(uuid.uuid4(), uuid.uuid4(), "u5"))
        faults = auth.emulator.state.faults
        faults.add(
            FaultRule(kind="error", method="POST", path="/v5/oauth/token", status=503, count=1)
        )
        status, body = await auth.token(account_id, invalidate=True)
        assert status == 503
        assert body["code"] == "refresh_unavailable"
        row = await db.fetchrow("SELECT * FROM auth.accounts")
        assert row["status"] == "active"
        assert row["refresh_failures"] == 1
        assert "ServerError" in row["last_refresh_error"]
        # the scheduled loop: two more 5xx/429, then success; the account stays active
        faults.add(
            FaultRule(kind="error", method="POST", path="/v5/oauth/token", status=502, count=1)
        )
        faults.add(FaultRule(kind="rate_limit", method="POST", path="/v5/oauth/token", count=1))
        await db.execute("UPDATE auth.accounts SET refresh_due_at = now(), refresh_retry_at = NULL")

        async def refreshed() -> bool:
            return await generation(db, account_id) == 2

        await wait_until(refreshed, timeout=15)
        row = await db.fetchrow("SELECT * FROM auth.accounts")
        assert row["status"] == "active"
        assert row["refresh_failures"] == 0
        assert refresh_count(auth.emulator, user) == 1


async def test_the_loop_refreshes_ahead_and_a_revoked_grant_is_flagged_within_a_cycle(
    run_auth: RunAuth, probe: Probe, db: asyncpg.Pool
) -> None:
    async with run_auth(refresh_interval=0.3, refresh_ahead_ratio=0.5) as auth:
        alive = add_user(auth.emulator, "alive")
        dead = add_user(auth.emulator, "dead")
        lifetimes(auth, 3)
        a = account_id_of(await auth.connect(uuid.uuid4(), uuid.uuid4(), "alive"))
        d = account_id_of(await auth.connect(uuid.uuid4(), uuid.uuid4(), "dead"))
        _, before = await auth.token(a)
        auth.emulator.state.revoke(user_id=dead)
        lifetimes(auth, 3600)

        async def alive_refreshed() -> bool:
            return await generation(db, a) >= 2

        # due at 1.5 s (minus jitter), the loop wakes every 0.3 s
        await wait_until(alive_refreshed, timeout=4)
        _, after = await auth.token(a)
        assert after["access_token"] != before["access_token"]
        assert refresh_count(auth.emulator, alive) == 1
        reauth = await probe.wait_for("account.needs_reauth", timeout=2)
        assert reauth[0].payload.account_id == d


async def test_two_replicas_refresh_each_token_exactly_once(
    run_auth: RunAuth, db: asyncpg.Pool
) -> None:
    opts: dict[str, Any] = {
        "refresh_interval": 0.1,
        "refresh_batch_size": 2,
        "refresh_concurrency": 2,
        "refresh_jitter_ratio": 0.0,
        "refresh_ahead_ratio": 0.5,
    }
    async with run_auth(**opts) as one, run_auth(**opts) as two:
        users = [add_user(one.emulator, f"r{i}") for i in range(12)]
        lifetimes(one, 4)
        ids = [
            account_id_of(await one.connect(uuid.uuid4(), uuid.uuid4(), f"r{i}")) for i in range(12)
        ]
        lifetimes(one, 3600)  # refreshed tokens are not due again during the test
        # a slow token endpoint widens every race window
        one.emulator.state.faults.add(
            FaultRule(kind="latency", method="POST", path="/v5/oauth/token", seconds=0.15)
        )

        async def all_refreshed() -> bool:
            gens = await db.fetch("SELECT token_generation FROM auth.accounts")
            return all(r["token_generation"] >= 2 for r in gens)

        await wait_until(all_refreshed, timeout=15)
        await asyncio.sleep(1.0)
        counts = [refresh_count(one.emulator, u) for u in users]
        assert counts == [1] * 12
        gens = [await generation(db, i) for i in ids]
        assert gens == [2] * 12
        per_replica = [_refreshes(a) for a in (one, two)]
        assert sum(per_replica) == 12
        assert all(n > 0 for n in per_replica), per_replica
        print(f"refreshes per replica: {per_replica}")


def _refreshes(auth: Auth) -> int:
    registry = auth.app[METRICS_KEY].registry
    value = registry.get_sample_value(
        "codiv_auth_token_refreshes_total", {"trigger": "scheduled", "outcome": "ok"}
    )
    return int(value or 0)
