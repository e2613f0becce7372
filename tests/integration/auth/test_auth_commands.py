"""Commands from the gateway (disconnect, sync) and the periodic board sync."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
from codiv_common.events import (
    AccountDisconnectRequested,
    AccountDisconnectRequestedEvent,
    AccountSyncRequested,
    AccountSyncRequestedEvent,
)
from codiv_pinterest.emulator.config import SeedBoard

from .conftest import Probe, RunAuth, account_id_of, add_user, issued_tokens

pytestmark = pytest.mark.integration


async def test_disconnect_destroys_tokens_once_and_emits(
    run_auth: RunAuth, probe: Probe, db: asyncpg.Pool
) -> None:
    ws, profile = uuid.uuid4(), uuid.uuid4()
    async with run_auth() as auth:
        add_user(auth.emulator, "bye")
        account_id = account_id_of(await auth.connect(ws, profile, "bye"))
        # a request for the same profile id from another workspace changes nothing
        await probe.publish(
            AccountDisconnectRequestedEvent(
                workspace_id=uuid.uuid4(), payload=AccountDisconnectRequested(profile_id=profile)
            )
        )
        request = AccountDisconnectRequestedEvent(
            workspace_id=ws,
            producer="gateway",
            payload=AccountDisconnectRequested(profile_id=profile),
        )
        await probe.publish(request)
        await probe.publish(request)  # a duplicate delivery
        gone = await probe.wait_for("account.disconnected")
        assert gone[0].payload.account_id == account_id
        assert gone[0].payload.profile_id == profile
        assert gone[0].causation_id == request.event_id
        await asyncio.sleep(0.5)
        assert len(probe.of_type("account.disconnected")) == 1
        assert await db.fetchval("SELECT count(*) FROM auth.accounts") == 0
        processed = await db.fetchval("SELECT count(*) FROM auth.processed_events")
        assert processed == 2
        status, body = await auth.token(account_id)
        assert (status, body["code"]) == (404, "account_not_found")
        for token in issued_tokens(auth.emulator):
            assert token not in str(await db.fetch("SELECT * FROM auth.accounts"))


async def test_sync_on_request_and_periodically_only_when_changed(
    run_auth: RunAuth, probe: Probe
) -> None:
    ws, profile = uuid.uuid4(), uuid.uuid4()
    async with run_auth(board_sync_interval=0.5) as auth:
        user = add_user(auth.emulator, "boards", boards=2)
        account_id = account_id_of(await auth.connect(ws, profile, "boards"))
        first = await probe.wait_for("account.boards_synced")
        assert len(first[0].payload.boards) == 2
        await asyncio.sleep(1.5)  # periodic syncs ran; nothing changed, nothing emitted
        assert len(probe.of_type("account.boards_synced")) == 1
        state = auth.emulator.state
        state.add_boards(state.users[user], [SeedBoard(name="New", sections=["One"])])
        changed = await probe.wait_for("account.boards_synced", count=2, timeout=5)
        assert [b.name for b in changed[1].payload.boards][-1] == "New"
        assert changed[1].payload.boards[-1].sections[0].name == "One"
        # asked for explicitly, it is emitted even without a change
        await probe.publish(
            AccountSyncRequestedEvent(
                workspace_id=ws,
                producer="gateway",
                payload=AccountSyncRequested(profile_id=profile),
            )
        )
        again = await probe.wait_for("account.boards_synced", count=3, timeout=5)
        assert again[2].payload.account_id == account_id
        assert len(again[2].payload.boards) == 3
