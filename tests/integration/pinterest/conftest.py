"""Fixtures for the Pinterest client/emulator tests, with OpenAPI contract checking.

Every ``/v5`` request that reaches the emulator through the ``emulator`` fixture, and
every answer it gives, is recorded by an outer aiohttp middleware and validated against
the vendored Pinterest spec (``libs/pinterest/spec/openapi.json``) with openapi-core when
the test ends; any violation fails the test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from codiv_pinterest import PinterestClient
from codiv_pinterest.contract import ContractChecker, Recorder
from codiv_pinterest.emulator import EmulatorConfig
from codiv_pinterest.testing import EmulatorAdmin, RunningEmulator, run_emulator


@pytest.fixture(scope="session")
def contract() -> ContractChecker:
    """The spec loaded once per test session (building it takes about two seconds)."""
    return ContractChecker.load()


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    """Override in a test module (or parametrize) to start the emulator differently."""
    return EmulatorConfig(media={"seconds": 0.0})


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def emulator(
    emulator_config: EmulatorConfig, recorder: Recorder, contract: ContractChecker
) -> AsyncIterator[RunningEmulator]:
    """A fresh in-process emulator whose traffic must conform to the spec."""
    async with run_emulator(emulator_config, middlewares=[recorder.middleware]) as running:
        yield running
    problems = [
        f"{x.request.method.upper()} {x.request.path} {dict(x.request.query)}: {p}"
        for x in recorder.exchanges
        for p in contract.problems(x)
    ]
    assert not problems, "spec violations:\n" + "\n".join(problems)


@pytest.fixture
async def unchecked_emulator(emulator_config: EmulatorConfig) -> AsyncIterator[RunningEmulator]:
    """An emulator without contract checks, for tests that send invalid requests on purpose."""
    async with run_emulator(emulator_config) as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def client(http: aiohttp.ClientSession, emulator: RunningEmulator) -> PinterestClient:
    return PinterestClient(http, emulator.api_base_url, timeout=5.0)


@pytest.fixture
def admin(http: aiohttp.ClientSession, emulator: RunningEmulator) -> EmulatorAdmin:
    return EmulatorAdmin(http, emulator.base_url)


@pytest.fixture
async def token(admin: EmulatorAdmin) -> str:
    """An access token with every scope for the default user ``codiv_demo``."""
    answer = await admin.mint_token("codiv_demo")
    return str(answer["access_token"])


@pytest.fixture
def video_file(tmp_path: Path) -> Path:
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 4096)
    return path
