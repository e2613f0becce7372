"""The whole system as processes: Pinterest emulator plus any number of each service."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from codiv_common.crypto import KeyRing

from .processes import VENV_BIN, ServiceProcess, free_port, wait_until

SERVICE_COMMANDS = {
    "auth": "codiv-auth",
    "scheduler": "codiv-scheduler",
    "publisher": "codiv-publisher",
    "gateway": "codiv-gateway",
}


@dataclass
class SystemConfig:
    """Where the system runs and with which secrets. Ports of 0 are picked free."""

    database_url: str
    amqp_url: str
    log_dir: Path
    exchange: str = "codiv"
    queue_prefix: str = ""
    emulator_port: int = 0
    ports: dict[str, int] = field(default_factory=dict)
    replicas: dict[str, int] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)
    emulator_args: tuple[str, ...] = ()
    client_id: str = "codiv-demo-app"
    client_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    token_keys: str = field(default_factory=lambda: f"k1:{KeyRing.generate_key()}")
    internal_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    state_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    webhook_keys: str = field(default_factory=lambda: f"w1:{KeyRing.generate_key()}")
    log_format: str = "json"


class System:
    """Starts and stops the emulator and the services; knows their URLs."""

    def __init__(self, config: SystemConfig) -> None:
        self.config = config
        c = config
        self.emulator_port = c.emulator_port or free_port()
        self.processes: dict[str, list[ServiceProcess]] = {}
        self.emulator: ServiceProcess | None = None
        self._ports: dict[str, list[int]] = {}
        for name in SERVICE_COMMANDS:
            count = c.replicas.get(name, 1)
            first = c.ports.get(name, 0)
            self._ports[name] = [first if (i == 0 and first) else free_port() for i in range(count)]

    # ------------------------------------------------------------------ urls

    @property
    def emulator_url(self) -> str:
        return f"http://127.0.0.1:{self.emulator_port}"

    def url(self, service: str, replica: int = 0) -> str:
        return f"http://127.0.0.1:{self._ports[service][replica]}"

    @property
    def gateway_url(self) -> str:
        return self.url("gateway")

    def env(self) -> dict[str, str]:
        """The environment every service process gets (each reads what it needs)."""
        c = self.config
        auth = self.url("auth")
        env = {
            "DATABASE_URL": c.database_url,
            "AMQP_URL": c.amqp_url,
            "AMQP_EXCHANGE": c.exchange,
            "AMQP_QUEUE_PREFIX": c.queue_prefix,
            "LOG_FORMAT": c.log_format,
            "TOKEN_ENCRYPTION_KEYS": c.token_keys,
            "INTERNAL_SERVICE_TOKEN": c.internal_token,
            "OAUTH_STATE_SECRET": c.state_secret,
            "WEBHOOK_SECRET_KEYS": c.webhook_keys,
            "PINTEREST_CLIENT_ID": c.client_id,
            "PINTEREST_CLIENT_SECRET": c.client_secret,
            "PINTEREST_API_URL": f"{self.emulator_url}/v5",
            "PINTEREST_OAUTH_URL": f"{self.emulator_url}/oauth/",
            "OAUTH_REDIRECT_URI": f"{auth}/oauth/pinterest/callback",
            "OAUTH_SUCCESS_URL": f"{self.gateway_url}/docs",
            "AUTH_URL": auth,
            "ALLOW_LOOPBACK_MEDIA": "true",
        }
        env.update(c.extra_env)
        return env

    # ------------------------------------------------------------------ lifecycle

    def _spawn(self, name: str, replica: int, env: Mapping[str, str]) -> ServiceProcess:
        port = self._ports[name][replica]
        label = name if len(self._ports[name]) == 1 else f"{name}-{replica + 1}"
        own = {**env, "PORT": str(port)}
        if name == "publisher":  # spread publishers over the auth replicas
            own["AUTH_URL"] = self.url("auth", replica % len(self._ports["auth"]))
        return ServiceProcess(SERVICE_COMMANDS[name], own, self.config.log_dir, name=label)

    def replica_urls(self, service: str) -> list[str]:
        return [f"http://127.0.0.1:{p}" for p in self._ports[service]]

    async def start(self, wait: bool = True, timeout: float = 60.0) -> None:
        """Start the emulator, then every service replica; wait for readiness."""
        env = self.env()
        self.emulator = ServiceProcess(
            "codiv-pinterest-emulator",
            {"PORT": str(self.emulator_port)},
            self.config.log_dir,
            name="emulator",
            args=(
                "--host",
                "127.0.0.1",
                "--port",
                str(self.emulator_port),
                *self.config.emulator_args,
            ),
        ).start()
        for name in SERVICE_COMMANDS:
            self.processes[name] = [
                self._spawn(name, i, env).start() for i in range(len(self._ports[name]))
            ]
        if wait:
            await self.wait_ready(timeout)

    async def wait_ready(self, timeout: float = 60.0) -> None:
        assert self.emulator is not None
        waits = [self.emulator.wait_status("/_emulator/health", 200, timeout)]
        waits += [p.wait_status("/readyz", 200, timeout) for p in self.all_services()]
        await asyncio.gather(*waits)

    def all_services(self) -> list[ServiceProcess]:
        return [p for procs in self.processes.values() for p in procs]

    def stop(self) -> None:
        """SIGTERM every service (gateway first), then the emulator."""
        for name in ("gateway", "scheduler", "publisher", "auth"):
            for proc in self.processes.get(name, []):
                proc.stop()
        if self.emulator is not None:
            self.emulator.stop()

    def logs(self, tail: int = 3000) -> str:
        parts = []
        for proc in [*self.all_services(), *([self.emulator] if self.emulator else [])]:
            parts.append(f"----- {proc.name} -----\n{proc.logs()[-tail:]}")
        return "\n".join(parts)


class ApiError(AssertionError):
    """A gateway call answered an unexpected status."""


class Client:
    """A thin HTTP client for the gateway and the emulator's admin API."""

    def __init__(self, system: System, session: aiohttp.ClientSession) -> None:
        self.system = system
        self.session = session

    async def create_workspace(self, name: str, plan: str = "pro") -> dict[str, str]:
        """``codiv admin create-workspace --json``: returns workspace_id and api_key."""
        proc = await asyncio.create_subprocess_exec(
            str(VENV_BIN / "codiv"),
            "admin",
            "create-workspace",
            "--name",
            name,
            "--plan",
            plan,
            "--json",
            env={**os.environ, "DATABASE_URL": self.system.config.database_url},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise ApiError(f"create-workspace failed: {err.decode()}")
        data: dict[str, str] = json.loads(out.decode().strip().splitlines()[-1])
        return data

    async def api(
        self,
        method: str,
        path: str,
        api_key: str,
        body: Any = None,
        expect: int | tuple[int, ...] = (200, 201, 202, 204),
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """Call the gateway; return the decoded JSON body (None when empty)."""
        expected = (expect,) if isinstance(expect, int) else expect
        hdrs = {"Authorization": f"Bearer {api_key}", **(headers or {})}
        async with self.session.request(
            method, self.system.gateway_url + path, json=body, headers=hdrs
        ) as resp:
            text = await resp.text()
            if resp.status not in expected:
                raise ApiError(f"{method} {path} -> {resp.status}: {text[:2000]}")
            return json.loads(text) if text else None

    async def emulator(self, method: str, path: str, body: Any = None) -> Any:
        """Call the emulator's admin API (``/_emulator/...``)."""
        async with self.session.request(
            method, f"{self.system.emulator_url}/_emulator{path}", json=body
        ) as resp:
            text = await resp.text()
            if resp.status >= 300:
                raise ApiError(f"emulator {method} {path} -> {resp.status}: {text[:1000]}")
            return json.loads(text) if text else None

    async def connect_profile(
        self, api_key: str, profile: str, emulator_user: str | None = None
    ) -> dict[str, Any]:
        """Create ``profile`` (if new) and connect it through the real OAuth redirect chain.

        Follows authorize URL -> emulator consent -> auth callback by hand, then waits
        until the gateway's copy shows the account connected with its boards.
        """
        await self.api("POST", "/v1/profiles", api_key, {"name": profile}, expect=(201, 409))
        started = await self.api(
            "POST", f"/v1/profiles/{profile}/connections/pinterest", api_key, expect=(200, 201)
        )
        url = started["authorize_url"]
        if emulator_user:
            url += f"&emulator_user={emulator_user}"
        async with self.session.get(url, allow_redirects=False) as resp:
            if resp.status != 302:
                raise ApiError(f"emulator consent -> {resp.status}: {await resp.text()}")
            callback = resp.headers["Location"]
        async with self.session.get(callback, allow_redirects=False) as resp:
            if resp.status not in (302, 303):
                raise ApiError(f"auth callback -> {resp.status}: {await resp.text()}")

        async def connected() -> dict[str, Any] | None:
            info: dict[str, Any] = await self.api("GET", f"/v1/profiles/{profile}", api_key)
            conn = info.get("pinterest") or {}
            status = conn.get("status") if isinstance(conn, dict) else None
            return info if status == "connected" and info.get("boards_count") else None

        result: dict[str, Any] = await wait_until(connected, timeout=30, interval=0.2)
        return result
