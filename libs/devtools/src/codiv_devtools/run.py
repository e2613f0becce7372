"""``make run`` and ``make demo``: the whole system locally, set up and shown working.

``make run`` starts the Pinterest emulator and the four services as processes against
the local PostgreSQL (database ``codiv``) and RabbitMQ, prints their logs labelled and
interleaved, creates a demo workspace with two profiles connected through the real
OAuth redirect chain, prints the API key and ready-to-paste curl commands, and runs
until Ctrl-C. ``make demo`` does the same unattended, publishes a few posts of each
kind, prints how each ended and exits 0 only if every one ended as expected.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import signal
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web

from .processes import wait_until
from .scratch import create_database
from .system import Client, System, SystemConfig

STATE_DIR = Path(os.environ.get("CODIV_RUN_DIR", ".run"))
BOARD_LIVING_ROOM = "714329185762948372"
BOARD_DESKS = "714329185762948373"
COLOURS = ["\033[36m", "\033[35m", "\033[33m", "\033[32m", "\033[34m", "\033[31m"]
RESET = "\033[0m"

DEMO_SEED: dict[str, Any] = {
    "users": [
        {
            "username": "shop_account",
            "business_name": "Shop Account",
            "boards": [
                {"id": BOARD_LIVING_ROOM, "name": "Living room", "sections": ["Sofas"]},
                {"name": "Recipes", "sections": ["Salads", "Desserts"]},
            ],
        },
        {
            "username": "home_decor_store",
            "business_name": "Home Decor Store",
            "boards": [{"id": BOARD_DESKS, "name": "Desk setups"}, {"name": "Lighting"}],
        },
    ],
}
PROFILES = {"shop-account": "shop_account", "home-decor-store": "home_decor_store"}

# A tiny MP4 header: enough for the emulator's media store to accept it as a video.
DEMO_VIDEO = (
    b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x00\x00\x00\x08free" + b"\x00" * 2048
)


def _secrets() -> dict[str, str]:
    """Development secrets, generated once and kept in .run/ so restarts can decrypt."""
    path = STATE_DIR / "secrets.json"
    data: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    probe = SystemConfig(database_url="", amqp_url="", log_dir=STATE_DIR)
    fresh = {
        "token_keys": probe.token_keys,
        "internal_token": probe.internal_token,
        "state_secret": probe.state_secret,
        "client_secret": probe.client_secret,
        "webhook_keys": probe.webhook_keys,
    }
    if all(k in data for k in fresh):
        return data
    data = {**fresh, **data}  # keep what exists, add what a newer version needs
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    path.chmod(0o600)
    return data


async def _ensure_database(url: str) -> None:
    base, _, name = url.rpartition("/")
    try:
        conn = await asyncpg.connect(url)
        await conn.close()
    except asyncpg.InvalidCatalogNameError:
        await create_database(base + "/postgres", name)


async def _tail(system: System, stop: asyncio.Event) -> None:
    """Print every process' log lines, labelled, as they are written."""
    procs = [*([system.emulator] if system.emulator else []), *system.all_services()]
    width = max(len(p.name) for p in procs)
    offsets = {p.name: 0 for p in procs}
    tty = sys.stdout.isatty()
    while True:
        for i, proc in enumerate(procs):
            if not proc.log_path.exists():
                continue
            with proc.log_path.open("rb") as f:
                f.seek(offsets[proc.name])
                chunk = f.read()
            cut = chunk.rfind(b"\n") + 1
            offsets[proc.name] += cut
            for line in chunk[:cut].decode(errors="replace").splitlines():
                label = f"{proc.name:<{width}} |"
                if tty:
                    label = f"{COLOURS[i % len(COLOURS)]}{label}{RESET}"
                print(f"{label} {line}", flush=True)
        if stop.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.2)


async def _media_server() -> tuple[web.AppRunner, str]:
    """Serve demo media on loopback (the publisher downloads videos itself)."""

    async def video(_: web.Request) -> web.Response:
        return web.Response(body=DEMO_VIDEO, content_type="video/mp4")

    app = web.Application()
    app.router.add_get("/demo.mp4", video)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


def _curl_examples(key: str) -> str:
    future = (datetime.now(UTC) + timedelta(days=30)).replace(
        hour=14, minute=0, second=0, microsecond=0
    )
    return f"""
curl -X POST http://127.0.0.1:8080/v1/posts -H 'Authorization: Bearer {key}' -d '{{
  "profile_name": "shop-account", "platforms": ["pinterest"], "post_type": "image",
  "description": "Minimalist living room, spring 2026",
  "media_urls": ["https://cdn.example.com/room.jpg"],
  "pinterest_board_id": "{BOARD_LIVING_ROOM}",
  "pinterest_link": "https://shop.example.com/living-room",
  "pinterest_alt_text": "White sofa with wooden coffee table" }}'

curl -X POST http://127.0.0.1:8080/v1/posts -H 'Authorization: Bearer {key}' -d '{{
  "profile_name": "home-decor-store", "platforms": ["pinterest"], "post_type": "image",
  "description": "Scandinavian desk organizer — walnut finish, cable routing built in",
  "media_urls": ["https://cdn.example.com/organizer.jpg"],
  "pinterest_board_id": "{BOARD_DESKS}",
  "pinterest_link": "https://shop.example.com/desk-organizer",
  "pinterest_alt_text": "Walnut desk organizer on a white standing desk",
  "scheduled_date": "{future.strftime("%Y-%m-%dT%H:%M:%SZ")}" }}'

curl http://127.0.0.1:8080/v1/posts -H 'Authorization: Bearer {key}'
"""


async def _setup(client: Client) -> str:
    ws = await client.create_workspace(f"demo-{datetime.now(UTC):%Y%m%d-%H%M%S}", plan="pro")
    key = ws["api_key"]
    for profile, user in PROFILES.items():
        await client.connect_profile(key, profile, emulator_user=user)
    (STATE_DIR / "demo.json").write_text(json.dumps({"workspace": ws}, indent=2))
    return key


async def _demo(client: Client, key: str, media_base: str) -> bool:
    """Post one of each kind, wait for the outcomes, print them; True if all as expected."""
    soon = (datetime.now(UTC) + timedelta(seconds=4)).isoformat()
    base = {"profile_name": "shop-account", "platforms": ["pinterest"]}
    cases: list[tuple[str, dict[str, Any], str]] = [
        (
            "image pin now",
            {
                **base,
                "post_type": "image",
                "title": "Living room",
                "description": "Minimalist living room",
                "media_urls": ["https://cdn.example.com/room.jpg"],
                "pinterest_board_id": BOARD_LIVING_ROOM,
                "pinterest_link": "https://shop.example.com/living-room",
                "pinterest_alt_text": "White sofa",
            },
            "published",
        ),
        (
            "multi-image pin, scheduled",
            {
                **base,
                "post_type": "image",
                "description": "Three views",
                "media_urls": [f"https://cdn.example.com/view{i}.jpg" for i in range(3)],
                "pinterest_board_id": BOARD_LIVING_ROOM,
                "scheduled_date": soon,
            },
            "published",
        ),
        (
            "video pin, scheduled",
            {
                **base,
                "post_type": "video",
                "title": "Room tour",
                "media_urls": [f"{media_base}/demo.mp4"],
                "pinterest_board_id": BOARD_LIVING_ROOM,
                "pinterest_cover_key_frame_time": 1.5,
                "scheduled_date": soon,
            },
            "published",
        ),
        (
            "board given by name",
            {
                **base,
                "post_type": "image",
                "description": "Salad",
                "media_urls": ["https://cdn.example.com/salad.jpg"],
                "pinterest_board_id": "recipes",
            },
            "published",
        ),
        (
            "a post Pinterest refuses",
            {
                **base,
                "post_type": "image",
                "description": "Broken image",
                "media_urls": ["https://broken.invalid/image.jpg"],
                "pinterest_board_id": BOARD_LIVING_ROOM,
            },
            "failed",
        ),
    ]
    posted = []
    for label, body, expected in cases:
        post = await client.api("POST", "/v1/posts", key, body, expect=202)
        posted.append((label, post["id"], expected))
        print(f"posted  {label:<28} {post['id']}  status={post['status']}", flush=True)

    async def final(post_id: str) -> dict[str, Any] | None:
        post: dict[str, Any] = await client.api("GET", f"/v1/posts/{post_id}", key)
        return post if post["status"] in ("published", "failed", "cancelled") else None

    ok = True
    print("\nresults:")
    for label, post_id, expected in posted:
        try:
            post = await wait_until(functools.partial(final, post_id), timeout=60, interval=0.3)
        except AssertionError:
            post = await client.api("GET", f"/v1/posts/{post_id}", key)
        status = post["status"]
        detail = post.get("pin_url") or (post.get("error") or {}).get("message") or ""
        good = status == expected
        ok &= good
        mark = "ok  " if good else "FAIL"
        print(f"  {mark} {label:<28} {status:<10} {detail}", flush=True)
    return ok


async def main_async(args: argparse.Namespace) -> int:
    database_url = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/codiv")
    amqp_url = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    await _ensure_database(database_url)
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    seed = STATE_DIR / "emulator-seed.json"
    seed.write_text(json.dumps(DEMO_SEED, indent=2))
    secret = _secrets()
    logs = STATE_DIR / "logs"
    if logs.exists():
        for old in logs.glob("*.log"):
            old.unlink()
    config = SystemConfig(
        database_url=database_url,
        amqp_url=amqp_url,
        log_dir=logs,
        emulator_port=8090,
        ports={"gateway": 8080, "auth": 8081, "scheduler": 8082, "publisher": 8083},
        emulator_args=("--seed", str(seed), "--media-processing-seconds", "2"),
        token_keys=secret["token_keys"],
        internal_token=secret["internal_token"],
        state_secret=secret["state_secret"],
        client_secret=secret["client_secret"],
        webhook_keys=secret["webhook_keys"],
        log_format="console",
        extra_env={"OAUTH_SUCCESS_URL": "http://127.0.0.1:8080/docs"},
    )
    system = System(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tail_stop = asyncio.Event()
    await system.start(wait=False)
    tail = asyncio.create_task(_tail(system, tail_stop))
    code = 0
    media_runner, media_base = await _media_server()
    try:
        await system.wait_ready(timeout=90)
        async with aiohttp.ClientSession() as session:
            client = Client(system, session)
            key = await _setup(client)
            print(
                "\n=== Codiv is running ===\n"
                f"gateway  {system.gateway_url}   docs {system.gateway_url}/docs\n"
                f"emulator {system.emulator_url} (Pinterest stand-in)\n"
                f"API key  {key}   (workspace saved in {STATE_DIR}/demo.json)\n"
                "profiles shop-account, home-decor-store (connected to the emulator)\n"
                f"try:{_curl_examples(key)}",
                flush=True,
            )
            if args.demo:
                code = 0 if await _demo(client, key, media_base) else 1
                print(f"\ndemo {'passed' if code == 0 else 'FAILED'}", flush=True)
            else:
                print("Ctrl-C stops everything.\n", flush=True)
                await stop.wait()
    except Exception as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        code = 1
    finally:
        await media_runner.cleanup()
        system.stop()
        tail_stop.set()
        await tail
        print("all processes stopped", flush=True)
    return code


def main() -> None:
    parser = argparse.ArgumentParser(prog="codiv-dev", description=__doc__)
    parser.add_argument("--demo", action="store_true", help="post demo pins, check, exit")
    sys.exit(asyncio.run(main_async(parser.parse_args())))


if __name__ == "__main__":
    main()
