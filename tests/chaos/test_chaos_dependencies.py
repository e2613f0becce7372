"""RabbitMQ and PostgreSQL restarted mid-run: nothing lost or doubled, services ready by themselves.

Long only, and only with CODIV_CHAOS_DEPENDENCIES=1 (``make chaos`` sets it): these
restart the machine's shared PostgreSQL and RabbitMQ, which would break any other test
run using them at the same moment.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import time

import pytest
from chaos.chaos_support import Scale, all_ready, dependencies_allowed, new_run
from codiv_devtools.system import Client, System

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.chaos,
    pytest.mark.timeout(3600),
    pytest.mark.skipif(
        not dependencies_allowed(),
        reason="restarts the shared PostgreSQL/RabbitMQ: set CODIV_CHAOS_DEPENDENCIES=1",
    ),
]

SCALE = Scale(posts=1000, concurrency=12, scheduled_share=0.5, schedule_within=40,
              settle_timeout=600)  # fmt: skip
READY_TARGET = 15.0
DOWN_SECONDS = 5.0


def _pg_cluster(action: str) -> None:
    version = os.environ.get("PG_CLUSTER_VERSION") or sorted(os.listdir("/etc/postgresql"))[-1]
    cmd = ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action]
    if action == "stop":
        cmd += ["--", "-m", "fast"]
    subprocess.run(cmd, check=True, timeout=120, capture_output=True)


def _rabbit(action: str) -> None:
    subprocess.run(["rabbitmqctl", action], check=True, timeout=120, capture_output=True)


COMMANDS = {
    "rabbitmq": (lambda: _rabbit("stop_app"), lambda: _rabbit("start_app")),
    "postgresql": (lambda: _pg_cluster("stop"), lambda: _pg_cluster("start")),
}


@pytest.mark.parametrize("dependency", ["rabbitmq", "postgresql"])
async def test_dependency_restart_mid_run(
    dependency: str, chaos_client: Client, chaos_system: System
) -> None:
    run = await new_run(chaos_client, f"{dependency}-restart")
    stop, start = COMMANDS[dependency]

    async def restart() -> None:
        await asyncio.sleep(SCALE.schedule_within / 4)
        await asyncio.to_thread(stop)
        run.injected[f"{dependency} stopped"] += 1
        await asyncio.sleep(DOWN_SECONDS)
        await asyncio.to_thread(start)
        back = time.monotonic()
        run.injected[f"{dependency} started"] += 1
        await all_ready(chaos_system, 120)
        run.seen["all_ready_after_s"] = round(time.monotonic() - back, 1)

    await asyncio.gather(run.post_many(SCALE, rng=random.Random(11)), restart())
    await run.settle(SCALE.settle_timeout)
    await run.audit()
    run.report()
    run.assert_clean()
    assert run.seen["all_ready_after_s"] <= READY_TARGET, run.seen
