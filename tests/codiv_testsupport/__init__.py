"""Helpers shared by the test tiers (process helpers re-exported from codiv_devtools)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
from codiv_devtools.processes import ServiceProcess, free_port, wait_until
from codiv_devtools.system import System, SystemConfig

__all__ = ["ServiceProcess", "free_port", "started_system", "wait_until"]


@contextlib.asynccontextmanager
async def started_system(
    config: SystemConfig, request: pytest.FixtureRequest, timeout: float = 60.0
) -> AsyncIterator[System]:
    """The whole system as processes, ready; stopped after, logs printed if the test failed.

    (The root conftest records each phase's report on the item as ``rep_<phase>``.)
    """
    system = System(config)
    try:
        await system.start(timeout=timeout)
        yield system
    finally:
        system.stop()
        rep = getattr(request.node, "rep_call", None)
        if rep is None or rep.failed:
            print(system.logs(4000))
