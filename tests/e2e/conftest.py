"""End-to-end fixtures: services as separate processes on free ports."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
from codiv_devtools.system import Client, System, SystemConfig
from codiv_testsupport import ServiceProcess, free_port, started_system


def _secrets_env() -> dict[str, str]:
    c = SystemConfig(database_url="", amqp_url="", log_dir=Path())
    return {
        "TOKEN_ENCRYPTION_KEYS": c.token_keys,
        "INTERNAL_SERVICE_TOKEN": c.internal_token,
        "OAUTH_STATE_SECRET": c.state_secret,
        "WEBHOOK_SECRET_KEYS": c.webhook_keys,
        "PINTEREST_CLIENT_ID": c.client_id,
        "PINTEREST_CLIENT_SECRET": c.client_secret,
    }


@pytest.fixture
def service_env(database_url: str, broker) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Environment shared by every service of one test: its database and broker names."""
    return {
        "DATABASE_URL": database_url,
        "AMQP_URL": broker.url,
        "AMQP_EXCHANGE": broker.exchange,
        "AMQP_QUEUE_PREFIX": broker.queue_prefix,
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
        "SHUTDOWN_TIMEOUT": "10",
        # every service gets the secrets it would get in production (auth refuses to start
        # without them); values are fresh per test
        **{k: v for k, v in _secrets_env().items()},
    }


@pytest.fixture
def spawn(
    tmp_path: Path, service_env: dict[str, str], request: pytest.FixtureRequest
) -> Iterator[Callable[..., ServiceProcess]]:
    """Start a console script with the test's environment (plus overrides) on a free port."""
    started: list[ServiceProcess] = []

    def _spawn(command: str, name: str | None = None, **env: str) -> ServiceProcess:
        full = {**service_env, "PORT": str(free_port()), **env}
        proc = ServiceProcess(command, full, tmp_path, name=name or f"{command}-{len(started)}")
        started.append(proc.start())
        return proc

    yield _spawn
    for proc in started:
        proc.stop()
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        for proc in started:
            print(f"----- {proc.name} -----\n{proc.logs()[-4000:]}")


@pytest.fixture
def system_config(database_url: str, broker, tmp_path: Path) -> SystemConfig:  # type: ignore[no-untyped-def]
    """The whole system on this test's database and broker names (tests may adjust it)."""
    return SystemConfig(
        database_url=database_url,
        amqp_url=broker.url,
        log_dir=tmp_path / "logs",
        exchange=broker.exchange,
        queue_prefix=broker.queue_prefix,
    )


@pytest.fixture
async def system(
    system_config: SystemConfig, request: pytest.FixtureRequest
) -> AsyncIterator[System]:
    """Emulator + auth + scheduler + publisher + gateway as processes, all ready."""
    async with started_system(system_config, request) as running:
        yield running


@pytest.fixture
async def client(system: System) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession() as session:
        yield Client(system, session)
