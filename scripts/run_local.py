"""`make run`: start the whole system locally with labelled, interleaved logs.

Starts the Pinterest emulator (when installed) and the four services as separate
processes against the local PostgreSQL (database ``codiv``) and RabbitMQ, waits until
every one is ready, and stops them all cleanly on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sys
from pathlib import Path

import aiohttp
import asyncpg

VENV_BIN = Path(sys.executable).parent
COLOURS = ["\033[36m", "\033[35m", "\033[33m", "\033[32m", "\033[34m", "\033[31m"]
RESET = "\033[0m"

SERVICES = {
    "emulator": ("codiv-pinterest-emulator", 8090),
    "auth": ("codiv-auth", 8081),
    "scheduler": ("codiv-scheduler", 8082),
    "publisher": ("codiv-publisher", 8083),
    "gateway": ("codiv-gateway", 8080),
}


async def ensure_database(url: str) -> None:
    """Create the database named in ``url`` when it does not exist yet."""
    base, _, name = url.rpartition("/")
    try:
        conn = await asyncpg.connect(url)
        await conn.close()
        return
    except asyncpg.InvalidCatalogNameError:
        pass
    admin = await asyncpg.connect(base + "/postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()


async def pump(name: str, colour: str, stream: asyncio.StreamReader) -> None:
    width = max(len(n) for n in SERVICES)
    tty = sys.stdout.isatty()
    while line := await stream.readline():
        label = f"{name:<{width}} |"
        if tty:
            label = f"{colour}{label}{RESET}"
        sys.stdout.write(f"{label} {line.decode(errors='replace')}")
        sys.stdout.flush()


async def wait_ready(url: str, timeout: float = 60) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    async with aiohttp.ClientSession() as session:
        while asyncio.get_running_loop().time() < deadline:
            try:
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return True
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.3)
    return False


async def main(args: argparse.Namespace) -> int:
    env = dict(os.environ)
    env.setdefault("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/codiv")
    env.setdefault("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    env.setdefault("LOG_FORMAT", "console")
    await ensure_database(env["DATABASE_URL"])
    procs: dict[str, asyncio.subprocess.Process] = {}
    pumps: list[asyncio.Task[None]] = []
    for i, (name, (command, port)) in enumerate(SERVICES.items()):
        exe = VENV_BIN / command
        if not exe.exists() and shutil.which(command) is None:
            print(f"(skipping {name}: {command} is not installed yet)")
            continue
        argv = [str(exe)]
        penv = {**env, "PORT": str(port)}
        if name == "emulator":
            argv += ["--host", "127.0.0.1", "--port", str(port)]
        proc = await asyncio.create_subprocess_exec(
            *argv, env=penv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        procs[name] = proc
        assert proc.stdout is not None
        pumps.append(asyncio.create_task(pump(name, COLOURS[i % len(COLOURS)], proc.stdout)))

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    ready = await asyncio.gather(
        *(
            wait_ready(
                f"http://127.0.0.1:{SERVICES[n][1]}/{'healthz' if n == 'emulator' else 'readyz'}"
            )
            for n in procs
            if n != "emulator"
        )
    )
    code = 0
    if all(ready):
        print("\nCodiv is running: gateway http://127.0.0.1:8080  (Ctrl-C stops everything)\n")
        if args.demo:
            stop.set()
        else:
            await stop.wait()
    else:
        print("error: not every service became ready; see the logs above", file=sys.stderr)
        code = 1
    for proc in procs.values():
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
    await asyncio.gather(*(p.wait() for p in procs.values()))
    await asyncio.gather(*pumps, return_exceptions=True)
    print("all processes stopped")
    return code


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--demo", action="store_true", help="start, check, and exit")
    sys.exit(asyncio.run(main(parser.parse_args())))
