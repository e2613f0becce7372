"""The migrations Job's script, taken from the rendered manifests, against real PostgreSQL."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest
import yaml

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
SERVICES = ("gateway", "auth", "scheduler", "publisher")


def job_command() -> list[str]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: cannot render the kustomize base")
    out = subprocess.run(
        [kubectl, "kustomize", str(ROOT / "deploy" / "k8s" / "base")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    (job,) = [d for d in yaml.safe_load_all(out) if d and d["kind"] == "Job"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    command: list[str] = container["command"]
    assert command == ["codiv", "migrate"]
    return [str(Path(sys.executable).parent / "codiv"), *command[1:]]


def expected_versions(service: str) -> set[int]:
    """What Runtime applies: shared migrations (offset 0), then the service's (10000+)."""
    shared = ROOT / "libs/common/src/codiv_common/migrations"
    own = ROOT / f"services/{service}/src/codiv_{service}/migrations"
    versions = {int(p.name[:4]) for p in shared.glob("[0-9]*.sql")}
    versions |= {10000 + int(p.name[:4]) for p in own.glob("[0-9]*.sql")}
    return versions


async def run(command: list[str], database_url: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        *command,
        env={"DATABASE_URL": database_url, "PATH": "/usr/bin:/bin", "LOG_FORMAT": "json"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    text = out.decode()
    assert proc.returncode == 0, text
    return text


async def test_migrate_job_migrates_every_schema_once(database_url: str) -> None:
    command = job_command()
    first = await run(command, database_url)
    for service in SERVICES:
        assert f"migrated schema={service} applied=[" in first
    conn = await asyncpg.connect(database_url)
    try:
        for service in SERVICES:
            rows = await conn.fetch(f"SELECT version FROM {service}.schema_migrations")
            assert {r["version"] for r in rows} == expected_versions(service), service
    finally:
        await conn.close()
    # Idempotent, like the services' own start-up migration: nothing applied twice.
    second = await run(command, database_url)
    for service in SERVICES:
        assert f"migrated schema={service} applied=[]" in second
