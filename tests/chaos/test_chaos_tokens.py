"""Tokens expiring mid-run are refreshed without a failed post; a revoked account pauses
its posts, which resume after a reconnect."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import pytest
from chaos.chaos_support import Scale, new_run
from codiv_devtools.system import Client, System

pytestmark = pytest.mark.e2e

SHORT = Scale(posts=40, concurrency=4, scheduled_share=0.8, schedule_within=16, settle_timeout=90)
LONG = Scale(posts=1000, concurrency=12, scheduled_share=0.5, schedule_within=60,
             settle_timeout=600)  # fmt: skip
# auth hands back the current token instead of refreshing when it was issued less than
# INVALIDATE_COALESCE_SECONDS (10) ago; expiries here come later than that (see the
# last test of this file for what happens sooner).
COALESCE = 10.0
PARAMS = [
    pytest.param(SHORT, id="short"),
    pytest.param(LONG, id="long", marks=[pytest.mark.chaos, pytest.mark.timeout(3600)]),
]


@pytest.mark.parametrize("scale", PARAMS)
async def test_token_expiry_mid_run_fails_no_post(
    scale: Scale, chaos_client: Client, chaos_system: System
) -> None:
    run = await new_run(chaos_client, f"expiry-{scale.posts}")
    before = await chaos_client.emulator("GET", "/stats")
    expiries = 1 if scale is SHORT else 3

    async def expire() -> None:
        for i in range(expiries):
            gap = COALESCE + 1 if i == 0 else scale.schedule_within / expiries
            await asyncio.sleep(gap)
            await chaos_client.emulator("POST", "/tokens/expire", {"username": "codiv_demo"})
            run.injected["access token expired"] += 1

    await asyncio.gather(run.post_many(scale, rng=random.Random(5)), expire())
    await run.settle(scale.settle_timeout)
    await run.audit()
    after = await chaos_client.emulator("GET", "/stats")
    refreshes = sum(after["token_refreshes"].values()) - sum(before["token_refreshes"].values())
    run.seen["token_refreshes"] = refreshes
    run.report()
    run.assert_clean()
    assert refreshes >= 1, "the expired token was never refreshed"


@pytest.mark.parametrize("scale", PARAMS)
async def test_revoked_account_pauses_posts_and_resumes_after_reconnect(
    scale: Scale, chaos_client: Client, chaos_system: System
) -> None:
    run = await new_run(chaos_client, f"revoke-{scale.posts}")
    # Every post is accepted while the account is fine; most are due a little later
    # (once revoked, the gateway refuses new posts for the profile until reconnected).
    late = Scale(scale.posts, scale.concurrency, 0.9, scale.schedule_within, scale.settle_timeout)
    await run.post_many(late, rng=random.Random(9))
    await chaos_client.emulator("POST", "/tokens/revoke", {"username": "codiv_demo"})
    run.injected["account revoked"] += 1
    # The posts the revoked account could not publish wait (paused), none fails.
    await asyncio.sleep(scale.schedule_within + 3)
    posts = await run.statuses()
    failed = [i for i in run.accepted if posts[i]["status"] == "failed"]
    run.seen["failed_while_revoked"] = len(failed)
    run.seen["statuses_while_revoked"] = dict(Counter(p["status"] for p in posts.values()))
    assert not failed, f"{len(failed)} posts failed instead of pausing"
    await chaos_client.connect_profile(run.key, "shop")
    run.injected["account reconnected"] += 1
    await run.settle(scale.settle_timeout)
    await run.audit()
    run.report()
    run.assert_clean()


async def test_token_refused_right_after_issue_is_refreshed_not_failed(
    chaos_client: Client, chaos_system: System
) -> None:
    run = await new_run(chaos_client, "expiry-early")
    await chaos_client.emulator("POST", "/tokens/expire", {"username": "codiv_demo"})
    run.injected["access token expired right after connect"] += 1
    await run.post_many(SHORT, count=5, rng=random.Random(1))
    await run.settle(30)
    await run.audit()
    run.report()
    run.assert_clean()
