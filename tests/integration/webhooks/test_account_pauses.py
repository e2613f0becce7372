"""Posts of an account that needs reauth pause, resume in due order on reconnect, publish
once; they fail after the grace period, or when the account is disconnected."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any

import pytest
from codiv_common.events import (
    AccountConnected,
    AccountConnectedEvent,
    AccountDisconnected,
    AccountDisconnectedEvent,
)
from codiv_pinterest.emulator.config import EmulatorConfig, RateLimitConfig
from codiv_testsupport import wait_until

pytestmark = pytest.mark.integration

UNLIMITED = RateLimitConfig(per_user={"org_read": 100000, "org_write": 100000})


async def _paused_posts(h: Any, count: int) -> list[Any]:
    await h.admin("POST", "/tokens/revoke", {"username": h.account.username})
    now = dt.datetime.now(dt.UTC)
    events = []
    # Sent in reverse due order: the resume must follow the due times, not arrival.
    for i in reversed(range(count)):
        e = h.due(h.content(title=f"post {i}"))
        payload = e.payload.model_copy(update={"due_at": now - dt.timedelta(minutes=10 - i)})
        events.append(e.model_copy(update={"payload": payload}))
    await h.send(*events)
    ids = {e.payload.post_id for e in events}
    await wait_until(lambda: {e.payload.post_id for e in h.of("post.paused")} == ids, timeout=20)
    return sorted(events, key=lambda e: e.payload.due_at)


def _reconnected(h: Any) -> AccountConnectedEvent:
    return AccountConnectedEvent(
        workspace_id=h.workspace_id,
        producer="auth",
        payload=AccountConnected(
            account_id=h.account.account_id,
            profile_id=uuid.uuid4(),
            username=h.account.username,
            reconnected=True,
        ),
    )


async def test_reconnect_resumes_paused_posts_in_due_order_and_they_publish_once(
    harness: Any,
) -> None:
    h = await harness(EmulatorConfig(rate_limits=UNLIMITED))
    events = await _paused_posts(h, 3)
    ids = [e.payload.post_id for e in events]
    assert all(h.outcome(p) is None for p in ids)
    assert h.of("post.retry") == []

    # Reconnect: new tokens at auth, then auth's account.connected (sent twice: idempotent).
    tokens = await h.admin("POST", "/tokens", {"username": h.account.username})
    h.account.access_token = tokens["access_token"]
    h.account.refresh_token = tokens["refresh_token"]
    connected = _reconnected(h)
    await h.publisher_events.publish(connected)
    await h.publisher_events.publish(connected)
    await h.wait_outcomes(ids)

    resumed = h.of("post.resumed")
    assert [e.payload.post_id for e in resumed] == ids  # due order
    retries = [e for e in h.of("post.retry") if e.payload.resumed]
    assert [e.payload.post_id for e in retries] == ids
    assert [e.payload.retry_at for e in retries] == sorted(e.payload.retry_at for e in retries)
    assert all(e.payload.attempt == 2 for e in retries)
    for post_id in ids:
        outcome = h.outcome(post_id)
        assert outcome is not None
        assert outcome.type == "post.published"
        assert len(h.of("post.published", post_id)) == 1
        # The resumed run announces its attempt like any new attempt.
        assert [e.payload.attempt for e in h.of("post.publishing", post_id)] == [1, 2]
    pins = await h.emulator_pins()
    assert sorted(p["title"] for p in pins) == ["post 0", "post 1", "post 2"]


async def test_paused_post_fails_after_the_grace_period(harness: Any) -> None:
    h = await harness(
        EmulatorConfig(rate_limits=UNLIMITED),
        pause_grace_hours=1.5 / 3600,
        pause_check_interval=0.2,
    )
    [event] = await _paused_posts(h, 1)
    paused = h.of("post.paused")[0]
    assert paused.payload.fail_at - paused.payload.paused_at == dt.timedelta(seconds=1.5)
    await h.wait_outcomes([event.payload.post_id], timeout=15)
    outcome = h.outcome(event.payload.post_id)
    assert outcome.type == "post.failed"
    assert outcome.payload.error.code == "pinterest_reauth_required"
    assert "not reconnected within" in outcome.payload.error.message
    # A reconnect afterwards changes nothing for it.
    await h.publisher_events.publish(_reconnected(h))
    await asyncio.sleep(1.0)
    assert h.of("post.resumed") == []


async def test_disconnect_fails_paused_posts(harness: Any) -> None:
    h = await harness(EmulatorConfig(rate_limits=UNLIMITED))
    [event] = await _paused_posts(h, 1)
    await h.publisher_events.publish(
        AccountDisconnectedEvent(
            workspace_id=h.workspace_id,
            producer="auth",
            payload=AccountDisconnected(account_id=h.account.account_id, profile_id=uuid.uuid4()),
        )
    )
    await h.wait_outcomes([event.payload.post_id], timeout=15)
    outcome = h.outcome(event.payload.post_id)
    assert outcome.type == "post.failed"
    assert outcome.payload.error.code == "pinterest_account_not_connected"
    assert outcome.payload.attempt == 1
