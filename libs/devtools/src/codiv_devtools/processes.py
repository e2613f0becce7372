"""Child processes for local runs and tests: start, wait for HTTP status, stop, kill."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import IO, Any

import aiohttp

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def wait_until(
    predicate: Callable[[], Any | Awaitable[Any]], timeout: float = 10.0, interval: float = 0.05
) -> Any:
    """Poll a sync or async predicate until it returns something truthy; fail after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


class ServiceProcess:
    """One console script run as its own process; output goes to a log file or a pipe."""

    def __init__(
        self,
        command: str,
        env: Mapping[str, str],
        log_dir: Path,
        name: str | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        self.command = command
        self.name = name or command
        self.env = {**os.environ, **env}
        self.args = args
        self.log_dir = log_dir
        self.log_path = log_dir / f"{self.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = int(env.get("PORT", "0"))

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, stdout: IO[bytes] | int | None = None) -> ServiceProcess:
        """Start the process (again, after a stop or kill); output appends to the log file."""
        exe = VENV_BIN / self.command
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if stdout is None:
            with self.log_path.open("ab") as log:
                self.proc = subprocess.Popen(
                    [str(exe), *self.args], env=self.env, stdout=log, stderr=subprocess.STDOUT
                )
        else:
            self.proc = subprocess.Popen(
                [str(exe), *self.args], env=self.env, stdout=stdout, stderr=subprocess.STDOUT
            )
        return self

    async def wait_status(self, path: str, status: int = 200, timeout: float = 30.0) -> None:
        """Wait until ``GET path`` answers ``status``; fail early if the process exits."""
        async with aiohttp.ClientSession() as session:

            async def check() -> bool:
                if self.proc is not None and self.proc.poll() is not None:
                    raise AssertionError(f"{self.name} exited early:\n{self.logs()[-3000:]}")
                try:
                    async with session.get(self.base_url + path) as resp:
                        return resp.status == status
                except aiohttp.ClientError:
                    return False

            try:
                await wait_until(check, timeout=timeout, interval=0.1)
            except AssertionError as exc:
                raise AssertionError(f"{self.name}: {exc}\n{self.logs()[-3000:]}") from exc

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        """Signal the process and wait for it (SIGKILL after ``timeout``); return its code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)

    def kill(self) -> None:
        """SIGKILL: no clean-up at all, like a crash."""
        self.stop(signal.SIGKILL)
