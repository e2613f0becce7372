"""Webhook rules (pure): which events are delivered, their body, signatures and retry timing.

Signature (Stripe-style): header ``Codiv-Signature: t=<unix seconds>,v1=<hex>`` where
``v1 = HMAC-SHA256(secret, f"{t}.{raw body}")``. The body of one delivery never changes
between attempts; ``t`` is the time of the attempt, so receivers can refuse old replays.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

WEBHOOK_EVENTS = (
    "post.published",
    "post.failed",
    "account.needs_reauth",
    "account.token_expiring",
    "account.reconnected",
)
SIGNATURE_HEADER = "Codiv-Signature"
DELIVERY_HEADER = "Codiv-Delivery-Id"
EVENT_HEADER = "Codiv-Event"
SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
MAX_WEBHOOKS_PER_WORKSPACE = 16


def generate_secret() -> str:
    """A new signing secret (shown to the customer once)."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def public_event_type(event_type: str, payload: dict[str, Any]) -> str | None:
    """The webhook event an internal event becomes, or None when none is delivered."""
    if event_type == "account.connected":
        return "account.reconnected" if payload.get("reconnected") else None
    return event_type if event_type in WEBHOOK_EVENTS else None


def dedupe_key(public_type: str, event_id: str, payload: dict[str, Any]) -> str:
    """At most one delivery per webhook and key: a post's outcome is announced once even
    if the pipeline reports it twice; each account event is its own occurrence."""
    if public_type.startswith("post."):
        return f"{public_type}:{payload['post_id']}"
    return f"{public_type}:{event_id}"


def delivery_body(
    delivery_id: str,
    public_type: str,
    created_at: datetime,
    workspace_id: str,
    data: dict[str, Any],
) -> dict[str, Any]:
    """What a receiver gets; ``id`` (the delivery id) is the same on every retry."""
    return {
        "id": delivery_id,
        "object": "event",
        "type": public_type,
        "created_at": created_at.isoformat().replace("+00:00", "Z"),
        "workspace_id": workspace_id,
        "data": data,
    }


def encode_body(body: dict[str, Any]) -> bytes:
    """Deterministic JSON: the same bytes on every attempt."""
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The ``Codiv-Signature`` header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(
    secret: str, body: bytes, header: str, tolerance: float = 300, now: float | None = None
) -> bool:
    """Receiver side (the README's snippet): True when ``header`` signs ``body`` recently."""
    try:
        parts = [p.split("=", 1) for p in header.split(",")]
        timestamp = int(next(v for k, v in parts if k.strip() == "t"))
        candidates = [v for k, v in parts if k.strip() == "v1"]
    except (ValueError, StopIteration):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    return any(hmac.compare_digest(expected, c) for c in candidates)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with equal jitter, for ``window`` after the delivery's creation."""

    base: float = 30.0
    cap: float = 3600.0
    window: timedelta = timedelta(hours=24)

    def delay(self, failures: int, rng: random.Random) -> float:
        """Seconds before the next attempt after ``failures`` failed ones (>= 1)."""
        full = min(self.cap, self.base * 2.0 ** max(0, failures - 1))
        return full / 2 + rng.uniform(0, full / 2)

    def next_attempt(
        self, created_at: datetime, now: datetime, failures: int, rng: random.Random
    ) -> datetime | None:
        """When to try again, or None once that would fall outside the window (give up)."""
        at = now + timedelta(seconds=self.delay(failures, rng))
        return at if at <= created_at + self.window else None


def is_success(status: int) -> bool:
    return 200 <= status < 300
