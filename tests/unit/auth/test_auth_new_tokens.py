"""Tokens.new_tokens: encryption, schedule and the refresh token kept when none is rotated."""

from __future__ import annotations

import datetime as dt
import random
import uuid

import pytest
from codiv_auth.domain import ConnectFailed, TokenCipher
from codiv_auth.service import AuthMetrics, OAuthApp, TokenPolicy, Tokens
from codiv_common.crypto import KeyRing
from codiv_pinterest.models import TokenResponse
from prometheus_client import CollectorRegistry


def _tokens() -> Tokens:
    cipher = TokenCipher(KeyRing.parse(f"k1:{KeyRing.generate_key()}"))
    return Tokens(
        None,  # type: ignore[arg-type]  # not touched by new_tokens
        None,  # type: ignore[arg-type]
        cipher,
        OAuthApp("id", "secret", "http://x/cb"),
        TokenPolicy(ahead_ratio=0.8, jitter_ratio=0.0),
        AuthMetrics(CollectorRegistry()),
        rng=random.Random(0),
    )


def test_new_tokens_are_encrypted_and_scheduled() -> None:
    tokens = _tokens()
    aid = uuid.uuid4()
    issued = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    answer = TokenResponse(
        access_token="pina_a",
        refresh_token="pinr.r",
        expires_in=1000,
        refresh_token_expires_at=int((issued + dt.timedelta(days=60)).timestamp()),
        scope="pins:read,boards:read",
    )
    new = tokens.new_tokens(aid, answer, issued)
    assert tokens.cipher.decrypt(aid, new.access_token_enc) == "pina_a"
    assert tokens.cipher.decrypt(aid, new.refresh_token_enc) == "pinr.r"
    assert new.key_id == "k1"
    assert new.scopes == "boards:read,pins:read"
    assert new.expires_at == issued + dt.timedelta(seconds=1000)
    assert new.refresh_due_at == issued + dt.timedelta(seconds=800)
    assert new.refresh_expires_at == issued + dt.timedelta(days=60)


def test_a_refresh_without_a_new_refresh_token_keeps_the_old_one() -> None:
    tokens = _tokens()
    aid = uuid.uuid4()
    answer = TokenResponse(access_token="pina_b", expires_in=10, scope="pins:read")
    new = tokens.new_tokens(aid, answer, dt.datetime.now(dt.UTC), "pinr.old")
    assert tokens.cipher.decrypt(aid, new.refresh_token_enc) == "pinr.old"
    with pytest.raises(ConnectFailed, match="no refresh token"):
        tokens.new_tokens(aid, answer, dt.datetime.now(dt.UTC))
