"""Auth settings: refuse to start without secrets unless CODIV_DEV_MODE=1."""

from __future__ import annotations

import pytest
from codiv_auth.settings import ConfigError, Settings, resolve_secrets
from codiv_common.crypto import KeyRing
from pydantic import SecretStr


def _settings(**over: object) -> Settings:
    return Settings(**over)  # type: ignore[arg-type]


def test_missing_secrets_refuse_to_start_and_name_every_setting(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    for name in (
        "TOKEN_ENCRYPTION_KEYS",
        "INTERNAL_SERVICE_TOKEN",
        "OAUTH_STATE_SECRET",
        "PINTEREST_CLIENT_ID",
        "PINTEREST_CLIENT_SECRET",
        "CODIV_DEV_MODE",
    ):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError) as info:
        resolve_secrets(_settings())
    text = str(info.value)
    for name in (
        "TOKEN_ENCRYPTION_KEYS",
        "INTERNAL_SERVICE_TOKEN",
        "OAUTH_STATE_SECRET",
        "PINTEREST_CLIENT_ID",
        "PINTEREST_CLIENT_SECRET",
        "CODIV_DEV_MODE=1",
    ):
        assert name in text


def test_invalid_key_ring_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="TOKEN_ENCRYPTION_KEYS is invalid"):
        resolve_secrets(_settings(token_encryption_keys=SecretStr("k1:short"), codiv_dev_mode=True))


def test_dev_mode_uses_an_ephemeral_key_and_says_so() -> None:
    s = resolve_secrets(_settings(codiv_dev_mode=True))
    assert s.key_ring.current_key_id == "dev-ephemeral"
    assert any("EPHEMERAL" in w for w in s.warnings)
    assert resolve_secrets(_settings(codiv_dev_mode=True)).key_ring != s.key_ring
    assert "KeyRing" not in repr(s)  # key material never in a repr


def test_configured_secrets_are_used_as_given() -> None:
    key = KeyRing.generate_key()
    s = resolve_secrets(
        _settings(
            token_encryption_keys=SecretStr(f"k2:{key},k1:{KeyRing.generate_key()}"),
            internal_service_token=SecretStr("svc"),
            oauth_state_secret=SecretStr("st"),
            pinterest_client_id="app",
            pinterest_client_secret=SecretStr("shh"),
        )
    )
    assert s.key_ring.current_key_id == "k2"
    assert (s.internal_service_token, s.oauth_state_secret, s.client_id, s.client_secret) == (
        "svc",
        b"st",
        "app",
        "shh",
    )
    assert s.warnings == ()
    assert "shh" not in repr(s)
    assert "svc" not in repr(s)


def test_sandbox_switch_changes_the_default_api_url() -> None:
    assert _settings().api_url == "https://api.pinterest.com/v5"
    assert _settings(pinterest_env="sandbox").api_url == "https://api-sandbox.pinterest.com/v5"
    assert (
        _settings(pinterest_env="sandbox", pinterest_api_url="http://e/v5").api_url == "http://e/v5"
    )
