"""Bad input against the gateway: schemathesis, oversized/nested/non-UTF-8 bodies, SSRF URLs."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from codiv_devtools.processes import ServiceProcess, free_port
from codiv_devtools.system import Client, System, SystemConfig

pytestmark = pytest.mark.e2e
VENV_BIN = Path(sys.executable).parent

SSRF_URLS = [
    "http://127.0.0.1/a.jpg",
    "http://localhost/a.jpg",
    "http://app.localhost/a.jpg",
    "http://[::1]/a.jpg",
    "http://[::ffff:127.0.0.1]/a.jpg",
    "http://[::ffff:7f00:1]/a.jpg",
    "http://[64:ff9b::a00:1]/a.jpg",
    "http://[2002:7f00:1::]/a.jpg",
    "http://[fe80::1]/a.jpg",
    "http://[fd00::1]/a.jpg",
    "http://169.254.169.254/latest/meta-data/",
    "http://0.0.0.0/a.jpg",
    "http://10.0.0.1/a.jpg",
    "http://172.16.5.4/a.jpg",
    "http://192.168.1.1/a.jpg",
    "http://100.64.0.1/a.jpg",
    "http://2130706433/a.jpg",  # 127.0.0.1 as one decimal number
    "http://0x7f000001/a.jpg",  # hexadecimal
    "http://017700000001/a.jpg",  # octal
    "http://127.1/a.jpg",  # short form
    "http://0177.0.0.1/a.jpg",
    "http://user:pw@127.0.0.1/a.jpg",
    "http://127.0.0.1:22/a.jpg",
    "file:///etc/passwd",
    "gopher://127.0.0.1:25/_HELO",
    "ftp://10.0.0.1/a.jpg",
    "dict://127.0.0.1:11211/stat",
    "javascript:alert(1)",
    "http:///a.jpg",
    "http://127.0.0.1\t/a.jpg",
]


@pytest.fixture
async def gateway(database_url: str, broker, tmp_path: Path) -> AsyncIterator[ServiceProcess]:  # type: ignore[no-untyped-def]
    """The gateway alone, loopback media NOT allowed (production setting)."""
    port = free_port()
    env = {
        "DATABASE_URL": database_url,
        "AMQP_URL": broker.url,
        "AMQP_EXCHANGE": broker.exchange,
        "AMQP_QUEUE_PREFIX": broker.queue_prefix,
        "RATE_LIMIT_PRO": "1000000",
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "json",
        "PORT": str(port),
        "OAUTH_STATE_SECRET": "chaos-bad-input-state-secret",
    }
    proc = ServiceProcess("codiv-gateway", env, tmp_path, name="gateway").start()
    try:
        await proc.wait_status("/readyz", 200, 60)
        yield proc
    finally:
        proc.stop()


@pytest.fixture
async def api_key(gateway: ServiceProcess, database_url: str, tmp_path: Path) -> str:
    config = SystemConfig(database_url=database_url, amqp_url="", log_dir=tmp_path)
    async with aiohttp.ClientSession() as session:
        ws = await Client(System(config), session).create_workspace("bad-input", plan="pro")
    return ws["api_key"]


def _post(url: str, media: str) -> dict[str, object]:
    return {
        "profile_name": "shop",
        "platforms": ["pinterest"],
        "post_type": "image",
        "description": "x",
        "media_urls": [media],
        "pinterest_board_id": "123",
    }


async def test_bodies_and_ssrf_urls_are_refused_cleanly(
    gateway: ServiceProcess, api_key: str
) -> None:
    url = f"{gateway.base_url}/v1/posts"
    auth = {"Authorization": f"Bearer {api_key}"}
    json_ct = {**auth, "Content-Type": "application/json"}
    bodies: dict[str, tuple[bytes, tuple[int, ...]]] = {
        "oversized 20 MB": (b'{"description": "' + b"a" * (20 * 1024**2) + b'"}', (413,)),
        "nested 100k deep": (b"[" * 100_000 + b"]" * 100_000, (400, 413, 422)),
        "nested objects 50k deep": (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, (400, 413, 422)),
        "not UTF-8": (b'{"description": "\xff\xfe\xfa"}', (400, 415, 422)),
        "UTF-16": (json.dumps({"description": "x"}).encode("utf-16"), (400, 415, 422)),
        "truncated JSON": (b'{"description": "x"', (400, 422)),
        "empty": (b"", (400, 422)),
        "JSON array": (b"[1, 2]", (400, 422)),
        "huge number": (b'{"pinterest_cover_key_frame_time": 1e999999}', (400, 422)),
        "NUL in string": (b'{"description": "a\\u0000b"}', (400, 422)),
    }
    seen: Counter[str] = Counter()
    failures: list[str] = []
    async with aiohttp.ClientSession() as session:
        for name, (data, allowed) in bodies.items():
            async with session.post(url, data=io.BytesIO(data), headers=json_ct) as resp:
                text = await resp.text()
                seen[str(resp.status)] += 1
                if resp.status not in allowed:
                    failures.append(f"{name}: {resp.status} {text[:200]}")
                elif not resp.headers.get("Content-Type", "").startswith(
                    "application/problem+json"
                ):
                    failures.append(f"{name}: {resp.status} without problem+json")
        for media in SSRF_URLS:
            for field in ("media_urls", "pinterest_cover_image_url"):
                body = _post(url, media)
                if field == "pinterest_cover_image_url":
                    body.update(post_type="video", media_urls=["https://93.184.215.14/v.mp4"])
                    body[field] = media
                async with session.post(url, json=body, headers=auth) as resp:
                    text = await resp.text()
                    seen[str(resp.status)] += 1
                    if resp.status != 422 or (
                        media.split("/")[0] not in text and field not in text
                    ):
                        failures.append(f"SSRF {field}={media!r}: {resp.status} {text[:300]}")
        async with session.get(f"{gateway.base_url}/readyz") as resp:
            assert resp.status == 200, "the gateway did not survive the bad input"
    injected = len(bodies) + 2 * len(SSRF_URLS)
    print(f"\n=== bad input: injected {len(bodies)} malformed bodies, {len(SSRF_URLS)} SSRF URLs"
          f" in 2 fields ({injected} requests); seen statuses {dict(seen)}")  # fmt: skip
    print(f"refused wrongly or not cleanly: {len(failures)}")
    assert injected > 0
    assert not failures, "\n".join(failures)


SCHEMATHESIS = {
    "short": ("3", "10"),
    "long": ("300", "300"),
}


@pytest.mark.parametrize(
    "budget",
    [
        pytest.param("short", id="short"),
        pytest.param("long", id="long", marks=[pytest.mark.chaos, pytest.mark.timeout(1800)]),
    ],
)
async def test_schemathesis_stateful_finds_no_server_error(
    budget: str, gateway: ServiceProcess, api_key: str, tmp_path: Path
) -> None:
    examples, max_time = SCHEMATHESIS[budget]
    cmd = [
        str(VENV_BIN / "st"), "run", f"{gateway.base_url}/openapi.json",
        "--url", gateway.base_url, "-H", f"Authorization: Bearer {api_key}",
        "--checks", "not_a_server_error",
        "--phases", "examples,coverage,fuzzing,stateful",
        "--max-examples", examples, "--max-time", max_time,
        "--workers", "1", "--request-timeout", "20", "--no-shrink", "--warnings", "off",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=int(max_time) + 300,
                          cwd=tmp_path, env=dict(os.environ))  # fmt: skip
    out = proc.stdout + proc.stderr
    summary = [ln for ln in out.splitlines() if "passed" in ln or "failed" in ln or "cases" in ln]
    print(f"\n=== schemathesis ({budget}): max-examples {examples}, max-time {max_time} s, "
          f"stateful links on\n" + "\n".join(summary[-8:]))  # fmt: skip
    assert "test cases" in out or "cases" in out, "schemathesis generated nothing:\n" + out[-3000:]
    assert proc.returncode == 0, out[-6000:] + "\n" + gateway.logs()[-3000:]
