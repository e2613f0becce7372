"""Webhook delivery worker: sends due deliveries, signed, and schedules retries."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime

import aiohttp
import asyncpg
from codiv_common.crypto import DecryptionError, KeyRing
from codiv_common.logging import get_logger
from codiv_common.urlguard import UnsafeURL, blocked_reason, parse_http_url
from prometheus_client import CollectorRegistry, Counter

from . import webhooks
from .adapters.webhooks_repo import DueDelivery, WebhookRepo

log = get_logger(__name__)

USER_AGENT = "Codiv-Webhooks/1.0"


class WebhookWorker:
    """Claims due deliveries with ``FOR UPDATE SKIP LOCKED`` (any number of replicas) and
    POSTs them through one shared session whose resolver refuses non-public addresses
    (``codiv_common.urlguard.GuardedResolver``: DNS rebinding after the creation check is
    refused at connect time). 2xx: delivered. Anything else (status, timeout, refused
    address, redirect): retried with exponential backoff and jitter until 24 h after the
    delivery was created, then ``failed``. Never called from the event pipeline."""

    def __init__(
        self,
        pool: Callable[[], asyncpg.Pool],
        session: Callable[[], aiohttp.ClientSession],
        keys: KeyRing,
        policy: webhooks.RetryPolicy,
        *,
        timeout: float,
        batch: int,
        concurrency: int,
        poll_interval: float,
        allow_loopback: bool = False,
        registry: CollectorRegistry | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._pool = pool
        self._session = session
        self._keys = keys
        self._policy = policy
        self._timeout = timeout
        self._batch = batch
        self._limit = asyncio.Semaphore(concurrency)
        self._poll = poll_interval
        self._allow_loopback = allow_loopback
        self._rng = rng or random.Random()
        self._wake = asyncio.Event()
        self.attempts = Counter(
            "codiv_gateway_webhook_attempts",
            "Webhook delivery attempts by outcome (delivered, retry, failed)",
            ["outcome"],
            registry=registry,
        )

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """The loop: a pass, then sleep until the poll interval or a wake-up."""
        while True:
            try:
                busy = await self.run_once()
            except Exception as exc:  # the next round retries; never kill the loop
                log.warning("webhook_pass_failed", error=str(exc))
                busy = 0
            if busy >= self._batch:
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll)

    async def run_once(self) -> int:
        """Claim one batch of due deliveries and send them; returns how many were claimed."""
        lease = self._timeout + 30.0
        due = await WebhookRepo.claim_due(self._pool(), self._batch, lease)
        if due:
            await asyncio.gather(*(self._guarded(d) for d in due))
        return len(due)

    async def _guarded(self, delivery: DueDelivery) -> None:
        async with self._limit:
            try:
                await self.send(delivery)
            except Exception:  # the lease expires and it is sent again
                log.exception("webhook_send_crashed", delivery_id=str(delivery.id))

    def _literal_refused(self, url: str) -> str | None:
        # aiohttp does not resolve IP literals, so GuardedResolver never sees them.
        try:
            host = parse_http_url(url).host
            address = ipaddress.ip_address(host)
        except (UnsafeURL, ValueError):
            return None  # a name: GuardedResolver checks what it resolves to
        reason = blocked_reason(address, allow_loopback=self._allow_loopback)
        return f"refused to connect to {host!r}: {reason} address" if reason else None

    async def send(self, d: DueDelivery) -> None:
        body = webhooks.encode_body(d.body)
        status_code: int | None = None
        error: str | None = None
        started = time.perf_counter()
        try:
            secret = self._keys.decrypt(d.secret_enc, d.webhook_id.bytes)
        except DecryptionError as exc:
            secret, error = None, f"signing secret unavailable: {exc}"
            log.error("webhook_secret_undecryptable", webhook_id=str(d.webhook_id))
        if secret is not None:
            error = self._literal_refused(d.url)
        if secret is not None and error is None:
            headers = {
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                webhooks.SIGNATURE_HEADER: webhooks.sign(secret, body, int(time.time())),
                webhooks.DELIVERY_HEADER: str(d.id),
                webhooks.EVENT_HEADER: d.event_type,
            }
            try:
                async with self._session().post(
                    d.url,
                    data=body,
                    headers=headers,
                    allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=self._timeout),
                ) as resp:
                    status_code = resp.status
                    await resp.content.read(4096)  # enough to reuse the connection politely
                if not webhooks.is_success(status_code):
                    error = f"HTTP {status_code}"
            except TimeoutError:
                error = f"timed out after {self._timeout:g} s"
            except aiohttp.ClientError as exc:
                error = f"{type(exc).__name__}: {exc}"[:500]
            except OSError as exc:  # GuardedResolver refusing a non-public address
                error = str(exc)[:500]
        now = datetime.now(UTC)
        entry = {
            "at": now.isoformat().replace("+00:00", "Z"),
            "attempt": d.attempts + 1,
            "status_code": status_code,
            "error": error,
            "duration_ms": round((time.perf_counter() - started) * 1000),
        }
        if error is None:
            outcome, next_at = "delivered", None
        else:
            next_at = self._policy.next_attempt(d.created_at, now, d.attempts + 1, self._rng)
            outcome = "pending" if next_at is not None else "failed"
        await WebhookRepo.record_attempt(
            self._pool(),
            d.id,
            status=outcome,
            next_attempt_at=next_at,
            status_code=status_code,
            error=error,
            entry=entry,
        )
        label = "retry" if outcome == "pending" else outcome
        self.attempts.labels(label).inc()
        log.info(
            "webhook_attempt",
            delivery_id=str(d.id),
            webhook_id=str(d.webhook_id),
            event_type=d.event_type,
            outcome=label,
            status_code=status_code,
            error=error,
        )
