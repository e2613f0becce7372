"""Fault-injection harness: the whole system as processes, a ledger of accepted posts, an audit.

Every chaos test drives a ``ChaosRun`` (``chaos/chaos_support.py``): it posts through the
public API (each post has a unique title and an ``Idempotency-Key``, and is retried with
the same key when the gateway is down or the connection drops, as a careful client
would), records what it injected, waits until every accepted post reached a final
state, then audits the emulator's pins: lost = accepted posts without a pin (and not
expected to fail), duplicates = pins beyond one per title. ``ChaosRun.report`` prints
what was injected and seen and fails a run that injected nothing.

Short versions (marker ``e2e``) run in ``make test``; long ones carry the ``chaos``
marker and run in ``make chaos``. Restarting the shared PostgreSQL/RabbitMQ also
needs ``CODIV_CHAOS_DEPENDENCIES=1`` (``make chaos`` sets it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from chaos.chaos_support import CHAOS_ENV
from codiv_devtools.system import Client, System, SystemConfig
from codiv_testsupport import started_system


@pytest.fixture
def chaos_config(database_url: str, broker, tmp_path: Path) -> SystemConfig:  # type: ignore[no-untyped-def]
    return SystemConfig(
        database_url=database_url,
        amqp_url=broker.url,
        log_dir=tmp_path / "logs",
        exchange=broker.exchange,
        queue_prefix=broker.queue_prefix,
        extra_env=dict(CHAOS_ENV),
    )


@pytest.fixture
async def chaos_system(
    chaos_config: SystemConfig, request: pytest.FixtureRequest
) -> AsyncIterator[System]:
    async with started_system(chaos_config, request, timeout=90) as running:
        yield running


@pytest.fixture
async def chaos_client(chaos_system: System) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield Client(chaos_system, session)
