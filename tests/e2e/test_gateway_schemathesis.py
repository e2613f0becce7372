"""Property-based run of the public API against its own /openapi.json (bounded)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

VENV_BIN = Path(sys.executable).parent

pytestmark = pytest.mark.e2e

CHECKS = ",".join(
    (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "response_headers_conformance",
    )
)


def _admin(database_url: str, *args: str) -> dict[str, str]:
    out = subprocess.run(
        [str(VENV_BIN / "codiv"), "admin", *args, "--json"],
        env={**os.environ, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: dict[str, str] = json.loads(out.stdout)
    return result


async def test_schemathesis_finds_no_5xx_and_no_response_outside_the_spec(  # type: ignore[no-untyped-def]
    spawn, service_env, tmp_path
) -> None:
    gateway = spawn("codiv-gateway", RATE_LIMIT_PRO="1000000", LOG_LEVEL="WARNING")
    await gateway.wait_status("/readyz", 200, timeout=30)
    created = _admin(
        service_env["DATABASE_URL"], "create-workspace", "--name", "st", "--plan", "pro"
    )
    cmd = [
        str(VENV_BIN / "st"),
        "run",
        f"{gateway.base_url}/openapi.json",
        "--url",
        gateway.base_url,
        "-H",
        f"Authorization: Bearer {created['api_key']}",
        "--checks",
        CHECKS,
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        "10",
        "--max-time",
        "25",
        "--seed",
        "20261",
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--no-shrink",
        "--warnings",
        "off",
    ]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path, env=dict(os.environ)
    )
    report = proc.stdout[-6000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, report + "\n" + gateway.logs()[-3000:]
