"""Pure rules of webhooks and account health: signatures, backoff window, event mapping,
the token_expiring rule, and the gateway's paused/resumed status changes."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import random
import time

from codiv_auth.health import ExpiryPolicy, should_warn
from codiv_gateway import webhooks
from codiv_gateway.domain import status_change

NOW = dt.datetime(2026, 5, 1, 12, tzinfo=dt.UTC)


def readme_verify(secret: str, body: bytes, header: str, tolerance: int = 300) -> bool:
    """The verification snippet of the README, verbatim."""
    parts = dict(p.split("=", 1) for p in header.split(","))
    timestamp = int(parts["t"])
    if abs(time.time() - timestamp) > tolerance:
        return False
    signed = f"{timestamp}.".encode() + body
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"])


def test_signature_is_hmac_sha256_over_timestamp_and_body() -> None:
    body = webhooks.encode_body({"b": 1, "a": "é"})
    assert body == b'{"a":"\\u00e9","b":1}'
    header = webhooks.sign("whsec_s", body, 1_700_000_000)
    expected = hmac.new(b"whsec_s", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
    assert webhooks.verify("whsec_s", body, header, now=1_700_000_100)
    assert not webhooks.verify("whsec_s", body + b" ", header, now=1_700_000_100)
    assert not webhooks.verify("whsec_t", body, header, now=1_700_000_100)
    assert not webhooks.verify("whsec_s", body, header, now=1_700_000_400)  # too old
    assert not webhooks.verify("whsec_s", body, "garbage", now=1_700_000_100)
    fresh = webhooks.sign("whsec_s", body, int(time.time()))
    assert readme_verify("whsec_s", body, fresh)
    assert not readme_verify("whsec_x", body, fresh)


def test_secrets_are_random_and_prefixed() -> None:
    a, b = webhooks.generate_secret(), webhooks.generate_secret()
    assert a != b
    assert a.startswith("whsec_")
    assert len(a) > 40


def test_backoff_grows_with_jitter_and_stops_after_the_window() -> None:
    policy = webhooks.RetryPolicy(base=30, cap=3600, window=dt.timedelta(hours=24))
    rng = random.Random(1)
    for failures, full in ((1, 30), (2, 60), (3, 120), (8, 3600), (30, 3600)):
        delays = [policy.delay(failures, rng) for _ in range(200)]
        assert min(delays) >= full / 2
        assert max(delays) <= full
        assert max(delays) - min(delays) > full / 10  # jittered
    # Simulate a receiver that always fails: attempts stop inside 24 h, after ~24 h.
    created = now = NOW
    attempts = 1
    while (at := policy.next_attempt(created, now, attempts, rng)) is not None:
        now, attempts = at, attempts + 1
    assert now - created <= dt.timedelta(hours=24)
    assert now - created >= dt.timedelta(hours=22)
    assert 20 <= attempts <= 40


def test_event_mapping_and_dedupe_keys() -> None:
    assert webhooks.public_event_type("post.published", {}) == "post.published"
    assert webhooks.public_event_type("post.failed", {}) == "post.failed"
    assert webhooks.public_event_type("post.retry", {}) is None
    assert webhooks.public_event_type("post.paused", {}) is None
    assert webhooks.public_event_type("account.connected", {"reconnected": False}) is None
    assert (
        webhooks.public_event_type("account.connected", {"reconnected": True})
        == "account.reconnected"
    )
    assert webhooks.public_event_type("account.needs_reauth", {}) == "account.needs_reauth"
    assert webhooks.public_event_type("account.token_expiring", {}) == "account.token_expiring"
    assert webhooks.public_event_type("account.disconnected", {}) is None
    # A post's outcome once per webhook, whatever the event id; account events each time.
    assert webhooks.dedupe_key("post.failed", "e1", {"post_id": "p"}) == webhooks.dedupe_key(
        "post.failed", "e2", {"post_id": "p"}
    )
    assert webhooks.dedupe_key("account.needs_reauth", "e1", {}) != webhooks.dedupe_key(
        "account.needs_reauth", "e2", {}
    )


def test_token_expiring_rule() -> None:
    policy = ExpiryPolicy(within=dt.timedelta(days=7), min_failures=3)
    base = {
        "status": "active",
        "refresh_expires_at": NOW + dt.timedelta(days=6),
        "failures": 3,
        "notified_for": None,
        "now": NOW,
        "policy": policy,
    }
    assert should_warn(**base)  # type: ignore[arg-type]
    for change in (
        {"failures": 2},
        {"refresh_expires_at": NOW + dt.timedelta(days=8)},
        {"refresh_expires_at": None},
        {"status": "needs_reauth"},
        {"notified_for": NOW + dt.timedelta(days=6)},
    ):
        assert not should_warn(**{**base, **change}), change  # type: ignore[arg-type]
    # A new refresh token (new expiry) can warn again; an expired one still warns.
    assert should_warn(**{**base, "notified_for": NOW + dt.timedelta(days=1)})  # type: ignore[arg-type]
    assert should_warn(**{**base, "refresh_expires_at": NOW - dt.timedelta(hours=1)})  # type: ignore[arg-type]


def test_paused_and_resumed_status_changes() -> None:
    paused = {"attempt": 1, "reason": "needs reconnect.", "fail_at": "2026-05-04T12:00:00Z"}
    change = status_change("publishing", "post.paused", paused)
    assert change is not None
    assert (change.status, change.kind) == ("paused", "paused")
    assert "2026-05-04" in (change.message or "")
    assert status_change("published", "post.paused", paused) is None
    assert status_change("failed", "post.paused", paused) is None
    resumed = {"attempt": 2, "retry_at": "2026-05-01T12:00:00Z"}
    change = status_change("paused", "post.resumed", resumed)
    assert change is not None
    assert (change.status, change.kind) == ("publishing", "resumed")
    assert status_change("published", "post.resumed", resumed) is None
    assert status_change("paused", "post.retry", {"attempt": 2, "resumed": True}) is None
    # paused is not final: a failure (grace period over) and a publication apply.
    failed = status_change(
        "paused", "post.failed", {"attempt": 1, "error": {"code": "pinterest_reauth_required"}}
    )
    assert failed is not None
    assert failed.status == "failed"
    published = status_change("paused", "post.published", {"attempt": 2, "pin_id": "1"})
    assert published is not None
    assert published.status == "published"
