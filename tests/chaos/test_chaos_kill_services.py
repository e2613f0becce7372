"""SIGKILL each service in turn at a random moment while posts flow: none lost, none doubled."""

from __future__ import annotations

import asyncio
import random

import pytest
from chaos.chaos_support import Scale, new_run
from codiv_devtools.system import Client, System

pytestmark = pytest.mark.e2e

SERVICES = ("gateway", "scheduler", "publisher", "auth")
SHORT = Scale(posts=80, concurrency=8, scheduled_share=0.5, schedule_within=8, settle_timeout=90)
LONG = Scale(posts=5000, concurrency=16, scheduled_share=0.5, schedule_within=90,
             settle_timeout=600, rounds=2)  # fmt: skip


async def kill_each(system: System, run, rng: random.Random, gap: tuple[float, float]) -> None:  # type: ignore[no-untyped-def]
    """Kill every service once, in a random order, after a random pause; restart it at once."""
    order = list(SERVICES)
    rng.shuffle(order)
    for name in order:
        await asyncio.sleep(rng.uniform(*gap))
        proc = system.processes[name][0]
        proc.kill()
        run.injected[f"SIGKILL {name}"] += 1
        await asyncio.sleep(rng.uniform(0.0, 1.0))
        proc.start()
        await proc.wait_status("/readyz", 200, 60)


@pytest.mark.parametrize(
    "scale",
    [
        pytest.param(SHORT, id="short"),
        pytest.param(LONG, id="long", marks=[pytest.mark.chaos, pytest.mark.timeout(3600)]),
    ],
)
async def test_sigkill_each_service_loses_and_duplicates_nothing(
    scale: Scale, chaos_client: Client, chaos_system: System
) -> None:
    run = await new_run(chaos_client, f"kill-{scale.posts}")
    rng = random.Random()
    # Kills spread over the time posts are accepted and released.
    span = max(4.0, scale.schedule_within) / (len(SERVICES) * scale.rounds)
    gap = (0.3 * span, 1.2 * span)

    async def killer() -> None:
        for _ in range(scale.rounds):
            await kill_each(chaos_system, run, rng, gap)

    await asyncio.gather(run.post_many(scale, rng=random.Random(7)), killer())
    await run.settle(scale.settle_timeout)
    await run.audit()
    run.seen["restarts_ready"] = all(p.running for p in chaos_system.all_services())
    run.report()
    run.assert_clean()
