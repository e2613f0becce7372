"""Chaos harness pieces: run scales, the ledger of accepted posts, the audit, readiness."""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from codiv_devtools.system import ApiError, Client, System

FINAL = ("published", "failed", "cancelled")
# Settings that keep retries short enough for a test; everything else is the default.
CHAOS_ENV = {
    "RATE_LIMIT_PRO": "1000000",
    "WRITES_PER_MINUTE": "100000",
    "RETRY_BASE_DELAY": "0.5",
    "RETRY_MAX_DELAY": "4",
    "RATE_LIMIT_BACKOFF": "1",
    "PINTEREST_TIMEOUT": "5",
    "SHUTDOWN_TIMEOUT": "5",
    "DEPENDENCY_RETRY_MAX_DELAY": "1",
    "LOG_LEVEL": "INFO",
}
DEPENDENCIES_ENV = "CODIV_CHAOS_DEPENDENCIES"


@dataclass(frozen=True)
class Scale:
    """How big one run is: the short one for make test, the long one for make chaos."""

    posts: int
    concurrency: int
    scheduled_share: float  # share of posts scheduled a little later instead of now
    schedule_within: float  # seconds
    settle_timeout: float  # seconds to wait for every post to reach a final state
    rounds: int = 1


def dependencies_allowed() -> bool:
    return os.environ.get(DEPENDENCIES_ENV) == "1"


@dataclass
class ChaosRun:
    """One run's ledger: what was accepted, injected and seen."""

    client: Client
    key: str
    name: str
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    accepted: dict[str, str] = field(default_factory=dict)  # post id -> title
    expect_failed: dict[str, str] = field(default_factory=dict)  # post id -> error code
    injected: Counter[str] = field(default_factory=Counter)
    seen: dict[str, Any] = field(default_factory=dict)
    client_retries: int = 0
    final: dict[str, dict[str, Any]] = field(default_factory=dict)

    # ------------------------------------------------------------ posting

    def body(
        self, n: int, profile: str, delay: float | None, media: str | None = None
    ) -> dict[str, Any]:
        b: dict[str, Any] = {
            "profile_name": profile,
            "platforms": ["pinterest"],
            "post_type": "image",
            "title": f"{self.tag}-{n}",
            "description": f"chaos run {self.name}",
            "media_urls": [media or f"https://93.184.215.14/chaos/{n}.jpg"],
            "pinterest_board_id": "recipes",
        }
        if delay is not None:
            when = datetime.now(UTC) + timedelta(seconds=delay)
            b["scheduled_date"] = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return b

    async def post(self, body: dict[str, Any], deadline: float = 120) -> str:
        """POST with an Idempotency-Key; retried with the same key until it is accepted."""
        idem = f"chaos-{body['title']}"
        stop = time.monotonic() + deadline
        while True:
            try:
                post = await self.client.api(
                    "POST", "/v1/posts", self.key, body, expect=202,
                    headers={"Idempotency-Key": idem},
                )  # fmt: skip
                self.accepted[post["id"]] = body["title"]
                return str(post["id"])
            except (aiohttp.ClientError, TimeoutError, ApiError) as exc:
                text = str(exc)
                retryable = (
                    not isinstance(exc, ApiError)
                    or any(f"-> {s}" in text for s in (500, 502, 503, 504))
                    or ("-> 409" in text and "idempotency_conflict" in text)
                )
                if not retryable or time.monotonic() > stop:
                    raise
                self.client_retries += 1
                await asyncio.sleep(0.3)

    async def post_many(
        self,
        scale: Scale,
        profile: str = "shop",
        start: int = 0,
        count: int | None = None,
        rng: random.Random | None = None,
    ) -> None:
        """``count`` posts at bounded concurrency, a share of them scheduled a bit later."""
        rng = rng or random.Random(start)
        total = scale.posts if count is None else count
        queue: asyncio.Queue[int] = asyncio.Queue()
        for n in range(start, start + total):
            queue.put_nowait(n)

        async def worker() -> None:
            while not queue.empty():
                n = queue.get_nowait()
                delay = (
                    rng.uniform(1, scale.schedule_within)
                    if rng.random() < scale.scheduled_share
                    else None
                )
                await self.post(self.body(n, profile, delay))

        await asyncio.gather(*(worker() for _ in range(scale.concurrency)))

    # ------------------------------------------------------------ observing

    async def statuses(self) -> dict[str, dict[str, Any]]:
        """Every post of the workspace by id (paged list), retried while the gateway is down."""
        out: dict[str, dict[str, Any]] = {}
        cursor: str | None = None
        while True:
            path = "/v1/posts?limit=100" + (f"&cursor={cursor}" if cursor else "")
            for _ in range(200):
                try:
                    page = await self.client.api("GET", path, self.key)
                    break
                except (aiohttp.ClientError, TimeoutError, ApiError):
                    await asyncio.sleep(0.5)
            else:
                raise AssertionError("the gateway did not answer the post list for 100 s")
            for post in page["data"]:
                out[post["id"]] = post
            cursor = page.get("next_cursor")
            if not page.get("has_more"):
                return out

    async def settle(self, timeout: float) -> None:
        """Wait until every accepted post is final (published, failed, cancelled)."""
        deadline = time.monotonic() + timeout
        while True:
            posts = await self.statuses()
            pending = [i for i in self.accepted if posts.get(i, {}).get("status") not in FINAL]
            if not pending:
                self.final = posts
                return
            if time.monotonic() > deadline:
                self.final = posts
                counts = Counter(posts.get(i, {}).get("status", "missing") for i in pending)
                self.seen["not_final"] = dict(counts)
                return
            await asyncio.sleep(1.0)

    async def audit(self) -> dict[str, int]:
        """Lost and duplicated posts, from the emulator's pins grouped by title."""
        pins = (await self.client.emulator("GET", "/pins"))["items"]
        titles = Counter(p["title"] for p in pins if (p["title"] or "").startswith(self.tag))
        should_publish = {i: t for i, t in self.accepted.items() if i not in self.expect_failed}
        lost = [i for i, t in should_publish.items() if titles[t] == 0]
        wrong_status = [
            i for i in should_publish if self.final.get(i, {}).get("status") != "published"
        ]
        failed_wrong = [
            i
            for i, code in self.expect_failed.items()
            if self.final.get(i, {}).get("status") != "failed"
            or (self.final.get(i, {}).get("error") or {}).get("code") != code
        ]
        pinned_failures = [i for i in self.expect_failed if titles[self.accepted[i]] > 0]
        result = {
            "accepted": len(self.accepted),
            "expected_published": len(should_publish),
            "pins": sum(titles.values()),
            "lost": len(lost),
            "duplicates": sum(c - 1 for c in titles.values() if c > 1),
            "not_published_in_api": len(wrong_status),
            "expected_failures_wrong": len(failed_wrong),
            "expected_failures_with_pin": len(pinned_failures),
        }
        self.seen.update(result)
        unexpected = Counter(
            f"{self.final.get(i, {}).get('status')}:"
            f"{(self.final.get(i, {}).get('error') or {}).get('code')}"
            for i in wrong_status
        )
        if unexpected:
            self.seen["unexpected_outcomes"] = dict(unexpected)
        return result

    def report(self) -> None:
        """Print what was injected and seen; a run that injected nothing fails."""
        print(f"\n=== chaos run {self.name} (tag {self.tag})")
        print("injected: " + (", ".join(f"{k} x{v}" for k, v in self.injected.items()) or "-"))
        print(f"client retries (same Idempotency-Key): {self.client_retries}")
        print("seen: " + ", ".join(f"{k}={v}" for k, v in self.seen.items()))
        print(f"LOST {self.seen.get('lost')}  DUPLICATES {self.seen.get('duplicates')}")
        assert sum(self.injected.values()) > 0, "the run injected nothing"

    def assert_clean(self) -> None:
        s = self.seen
        assert "not_final" not in s, f"posts not final: {s.get('not_final')}"
        assert s["lost"] == 0, s
        assert s["duplicates"] == 0, s
        assert s["not_published_in_api"] == 0, s
        assert s["expected_failures_wrong"] == 0, s
        assert s["expected_failures_with_pin"] == 0, s


async def new_run(client: Client, name: str, profiles: Iterable[str] = ("shop",)) -> ChaosRun:
    """A pro workspace with ``profiles`` connected. The emulator's per-user limits are
    raised (the publisher is not paced in these runs; 429s are injected on purpose)."""
    big = 1_000_000_000
    await client.emulator(
        "PUT",
        "/rate-limits",
        {"per_user": {"org_write": big, "org_read": big, "org_analytics": big}},
    )
    ws = await client.create_workspace(f"chaos-{name}", plan="pro")
    for profile in profiles:
        await client.connect_profile(ws["api_key"], profile)
    return ChaosRun(client, ws["api_key"], name)


async def all_ready(system: System, timeout: float) -> float:
    """Seconds until every service answers /readyz 200 (fails after ``timeout``)."""
    started = time.monotonic()
    await asyncio.gather(*(p.wait_status("/readyz", 200, timeout) for p in system.all_services()))
    return time.monotonic() - started
