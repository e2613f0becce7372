"""account.token_expiring: emitted once when the refresh token is within 7 days of expiry
and refreshes keep failing; not for a healthy or far-from-expiry account."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest
from codiv_pinterest.emulator.faults import FaultRule
from integration.auth.conftest import account_id_of, add_user

pytestmark = pytest.mark.integration

DAY = 86400


async def test_expiring_refresh_token_with_failing_refreshes_warns_once(
    run_auth: Any, probe: Any, db: asyncpg.Pool
) -> None:
    async with run_auth(invalidate_coalesce_seconds=0, refresh_interval=60) as auth:
        state = auth.emulator.state
        add_user(auth.emulator, "soon")
        add_user(auth.emulator, "later")
        state.set_token_lifetimes({"access_token_seconds": 3600, "refresh_token_seconds": 3 * DAY})
        soon = account_id_of(await auth.connect(uuid.uuid4(), uuid.uuid4(), "soon"))
        state.set_token_lifetimes({"refresh_token_seconds": 60 * DAY})
        later = account_id_of(await auth.connect(uuid.uuid4(), uuid.uuid4(), "later"))
        state.faults.add(FaultRule(kind="error", method="POST", path="/v5/oauth/token", status=503))

        for attempt in range(1, 5):
            for account in (soon, later):
                status, _ = await auth.token(account, invalidate=True)
                assert status == 503
            # The once-per-token marker is written with the event, in one transaction.
            notified = await db.fetchval(
                "SELECT expiring_notified_for IS NOT NULL FROM auth.accounts WHERE id = $1",
                uuid.UUID(soon),
            )
            assert notified is (attempt >= 3), attempt
        [event] = await probe.wait_for("account.token_expiring")
        assert event.payload.account_id == soon
        row = await db.fetchrow(
            "SELECT refresh_expires_at, refresh_failures, status FROM auth.accounts WHERE id = $1",
            uuid.UUID(soon),
        )
        assert event.payload.refresh_token_expires_at == row["refresh_expires_at"]
        assert row["refresh_failures"] == 4
        assert row["status"] == "active"  # a warning, not a verdict
        # The fourth failure, and the far-from-expiry account, added nothing.
        await asyncio.sleep(0.5)
        assert len(probe.of_type("account.token_expiring")) == 1
