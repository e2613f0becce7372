"""The whole system for a benchmark: fresh database and broker names, processes, a client."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from codiv_devtools.processes import ServiceProcess
from codiv_devtools.scratch import create_database, drop_broker_names, drop_database
from codiv_devtools.system import Client, System, SystemConfig

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "results"


def pg_url() -> str:
    return os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def amqp_url() -> str:
    return os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


def proc_status(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak resident set) of a process, in MB."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = round(int(value.split()[0]) / 1024, 1)
    return out


def peak_memory(system: System) -> dict[str, dict[str, float]]:
    """Peak and current resident memory of every running process of the system."""
    procs = [*system.all_services(), *([system.emulator] if system.emulator else [])]
    result: dict[str, dict[str, float]] = {}
    for proc in procs:
        if proc.proc is not None and proc.proc.poll() is None:
            result[proc.name] = proc_status(proc.proc.pid)
    return result


@dataclass
class Bench:
    """A running system and a client on it."""

    system: System
    client: Client
    session: aiohttp.ClientSession
    log_dir: Path

    def service(self, name: str, replica: int = 0) -> ServiceProcess:
        return self.system.processes[name][replica]

    async def restart(self, name: str, env: Mapping[str, str] | None = None) -> None:
        """Stop every replica of ``name`` and start it again (with ``env`` added)."""
        for proc in self.system.processes[name]:
            proc.stop()
            if env:
                proc.env.update(env)
            proc.start()
        await asyncio.gather(
            *(p.wait_status("/readyz", 200, 60) for p in self.system.processes[name])
        )

    async def workspace(self, name: str) -> str:
        ws = await self.client.create_workspace(f"{name}-{uuid.uuid4().hex[:6]}", plan="pro")
        return ws["api_key"]

    async def emulator_user(self, username: str, board: str = "Bench") -> None:
        await self.client.emulator(
            "POST", "/users", {"username": username, "boards": [{"name": board}]}
        )

    async def connect(self, key: str, profile: str, username: str) -> None:
        await self.client.connect_profile(key, profile, emulator_user=username)

    async def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.client.emulator("GET", "/stats")
        return result

    async def pins(self, **query: str) -> list[dict[str, Any]]:
        qs = "&".join(f"{k}={v}" for k, v in query.items())
        data = await self.client.emulator("GET", "/pins" + (f"?{qs}" if qs else ""))
        items: list[dict[str, Any]] = data["items"]
        return items


@asynccontextmanager
async def running_system(
    replicas: Mapping[str, int] | None = None,
    extra_env: Mapping[str, str] | None = None,
    tag: str = "bench",
) -> AsyncIterator[Bench]:
    """A fresh database and exchange, every service started and ready; all removed after."""
    run = f"{tag}{uuid.uuid4().hex[:8]}"
    db_name = f"codiv_{run}"
    database_url = await create_database(pg_url(), db_name)
    log_dir = RESULTS / "logs" / run
    log_dir.mkdir(parents=True, exist_ok=True)
    config = SystemConfig(
        database_url=database_url,
        amqp_url=amqp_url(),
        log_dir=log_dir,
        exchange=f"codiv.{run}",
        queue_prefix=f"{run}.",
        replicas=dict(replicas or {}),
        extra_env={
            "LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
            "SHUTDOWN_TIMEOUT": "5",
            **dict(extra_env or {}),
        },
    )
    system = System(config)
    try:
        await system.start(timeout=120)
        async with aiohttp.ClientSession() as session:
            yield Bench(system, Client(system, session), session, log_dir)
    finally:
        system.stop()
        await drop_broker_names(amqp_url(), config.exchange, config.queue_prefix)
        await drop_database(pg_url(), db_name)


async def loadgen(
    urls: Sequence[str],
    body: dict[str, Any] | str,
    *,
    headers: Mapping[str, str] | None = None,
    concurrency: int = 64,
    duration: float | None = None,
    warmup: float = 0.0,
    count: int | None = None,
    ids_out: Path | None = None,
    mod: int = 1,
) -> dict[str, Any]:
    """Run the load generator as a separate process and return its JSON result."""
    text = body if isinstance(body, str) else json.dumps(body)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        f.write(text)
        body_file = f.name
    cmd = [sys.executable, "-m", "benchmarks.harness.loadgen", "--body-file", body_file]
    cmd += ["--concurrency", str(concurrency), "--mod", str(mod)]
    for url in urls:
        cmd += ["--url", url]
    for k, v in (headers or {}).items():
        cmd += ["--header", f"{k}: {v}"]
    if count is not None:
        cmd += ["--count", str(count)]
    else:
        cmd += ["--duration", str(duration or 10), "--warmup", str(warmup)]
    if ids_out is not None:
        cmd += ["--ids-out", str(ids_out)]
    try:
        proc = await asyncio.create_subprocess_exec(
            *cmd, cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await proc.communicate()
    finally:
        os.unlink(body_file)
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed: {err.decode()[-2000:]}")
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result
