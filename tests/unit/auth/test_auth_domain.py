"""Pure rules of the auth service: state, schedule, backoff, error classes, encryption."""

from __future__ import annotations

import datetime as dt
import random
import time
import uuid

import pytest
from codiv_auth.domain import (
    RefreshOutcome,
    StateRejected,
    TokenCipher,
    TokenDecryptionFailed,
    boards_digest,
    classify_refresh_error,
    make_state,
    parse_state,
    refresh_due_at,
    retry_delay,
    success_redirect,
)
from codiv_common import signed
from codiv_common.crypto import KeyRing
from codiv_pinterest.errors import (
    InvalidRequest,
    PinterestTransportError,
    RateLimited,
    ServerError,
    TokenRefused,
    Unauthorized,
)

SECRET = b"state-secret"


def _state(**over: object) -> str:
    claims = {"ws": str(uuid.uuid4()), "pid": str(uuid.uuid4()), "pname": "brand", "nonce": "n1"}
    claims.update(over)  # type: ignore[arg-type]
    return signed.sign(SECRET, claims, 600)


def test_valid_state_binds_workspace_and_profile() -> None:
    ws, pid = uuid.uuid4(), uuid.uuid4()
    state = parse_state(SECRET, make_state(SECRET, ws, pid, "My brand"))
    assert (state.workspace_id, state.profile_id, state.profile_name) == (ws, pid, "My brand")
    assert state.nonce
    assert state.expires_at > dt.datetime.now(dt.UTC) + dt.timedelta(seconds=590)


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda t: t[:-1] + ("0" if t[-1] != "0" else "1"), "was tampered with"),
        (lambda t: "x" + t, "was tampered with"),
        (lambda t: t.replace(".", ""), "is malformed"),
        (lambda t: "", "is missing"),
    ],
)
def test_tampered_or_malformed_state_is_rejected(mutate, reason) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(StateRejected) as info:
        parse_state(SECRET, mutate(_state()))
    assert info.value.reason == reason


def test_state_signed_with_another_secret_is_rejected() -> None:
    with pytest.raises(StateRejected, match="tampered"):
        parse_state(b"other", _state())


def test_expired_state_is_rejected() -> None:
    token = make_state(SECRET, uuid.uuid4(), uuid.uuid4(), "p", ttl=600, now=time.time() - 601)
    with pytest.raises(StateRejected, match="expired"):
        parse_state(SECRET, token)


def test_state_without_the_contract_claims_is_rejected() -> None:
    for claims in (
        {"ws": "nope", "pid": str(uuid.uuid4()), "pname": "p", "nonce": "n"},
        {"pid": str(uuid.uuid4()), "pname": "p", "nonce": "n"},
        {"ws": str(uuid.uuid4()), "pid": str(uuid.uuid4()), "pname": "p", "nonce": ""},
    ):
        with pytest.raises(StateRejected, match="malformed"):
            parse_state(SECRET, signed.sign(SECRET, claims, 600))


def test_refresh_is_due_at_the_ratio_of_the_life_minus_jitter() -> None:
    issued = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    rng = random.Random(1)
    for _ in range(200):
        due = refresh_due_at(issued, 1000, 0.8, 0.05, rng)
        assert issued + dt.timedelta(seconds=750) <= due <= issued + dt.timedelta(seconds=800)
    assert refresh_due_at(issued, 1000, 0.8, 0.0) == issued + dt.timedelta(seconds=800)
    assert refresh_due_at(issued, 0, 0.8, 0.05) == issued


def test_retry_delay_grows_and_is_capped() -> None:
    rng = random.Random(2)
    delays = [retry_delay(n, 5, 900, rng) for n in range(1, 30)]
    assert all(2.5 <= d <= 900 for d in delays)
    assert max(retry_delay(20, 5, 900, rng) for _ in range(50)) > 100


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (
            TokenRefused(400, 400, "Invalid refresh token.", oauth_error="invalid_grant"),
            RefreshOutcome.REFUSED,
        ),
        (TokenRefused(401, 2, "Authentication failed."), RefreshOutcome.REFUSED),
        (
            TokenRefused(401, 2, "Authentication failed.", oauth_error="invalid_client"),
            RefreshOutcome.OPERATOR,
        ),
        (Unauthorized(401, 2, "Authentication failed."), RefreshOutcome.REFUSED),
        (ServerError(503, 503, "down"), RefreshOutcome.TRANSIENT),
        (RateLimited(429, 8, "slow down"), RefreshOutcome.TRANSIENT),
        (PinterestTransportError("reset", outcome_unknown=True), RefreshOutcome.TRANSIENT),
        (InvalidRequest(400, 1, "bad"), RefreshOutcome.OPERATOR),
    ],
)
def test_refresh_errors_are_classified(error, outcome) -> None:  # type: ignore[no-untyped-def]
    assert classify_refresh_error(error) is outcome


def test_tokens_are_bound_to_their_account_and_key() -> None:
    ring = KeyRing.parse(f"k1:{KeyRing.generate_key()}")
    cipher = TokenCipher(ring)
    a, b = uuid.uuid4(), uuid.uuid4()
    blob = cipher.encrypt(a, "pina_secret")
    assert b"pina_secret" not in blob
    assert cipher.encrypt(a, "pina_secret") != blob  # random nonce
    assert cipher.decrypt(a, blob) == "pina_secret"
    with pytest.raises(TokenDecryptionFailed):
        cipher.decrypt(b, blob)  # copied onto another account's row
    wrong = TokenCipher(KeyRing.parse(f"k1:{KeyRing.generate_key()}"))
    with pytest.raises(TokenDecryptionFailed, match="k1"):
        wrong.decrypt(a, blob)
    unknown = TokenCipher(KeyRing.parse(f"k2:{KeyRing.generate_key()}"))
    with pytest.raises(TokenDecryptionFailed, match="no key"):
        unknown.decrypt(a, blob)


def test_old_key_still_decrypts_after_a_new_key_is_added() -> None:
    k1 = KeyRing.generate_key()
    old = TokenCipher(KeyRing.parse(f"k1:{k1}"))
    a = uuid.uuid4()
    blob = old.encrypt(a, "pinr.refresh")
    both = TokenCipher(KeyRing.parse(f"k2:{KeyRing.generate_key()},k1:{k1}"))
    assert both.decrypt(a, blob) == "pinr.refresh"
    assert KeyRing.key_id_of(both.encrypt(a, "x")) == "k2"


def test_board_digest_is_order_sensitive_and_stable() -> None:
    a = [{"id": "1", "name": "A", "privacy": "PUBLIC", "sections": []}]
    b = [{"name": "A", "id": "1", "sections": [], "privacy": "PUBLIC"}]
    assert boards_digest(a) == boards_digest(b)
    assert boards_digest(a) != boards_digest([*a, {"id": "2", "name": "B"}])


def test_success_redirect_keeps_existing_query() -> None:
    assert success_redirect("https://app/x?a=1", {"b": "2 3"}) == "https://app/x?a=1&b=2+3"
    assert success_redirect("https://app/x", {"b": "2"}) == "https://app/x?b=2"
