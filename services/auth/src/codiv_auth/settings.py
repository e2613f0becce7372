"""Settings of the auth service."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from codiv_common.crypto import KeyRing
from codiv_common.settings import ServiceSettings
from pydantic import Field, SecretStr

PRODUCTION_API_URL = "https://api.pinterest.com/v5"
SANDBOX_API_URL = "https://api-sandbox.pinterest.com/v5"
DEFAULT_SCOPES = "boards:read,boards:write,pins:read,pins:write,user_accounts:read"


class Settings(ServiceSettings):
    """Auth settings (environment variables; see the README's configuration table)."""

    service_name: str = "auth"
    port: int = 8081

    # Local development only: lets the service start without TOKEN_ENCRYPTION_KEYS,
    # INTERNAL_SERVICE_TOKEN and OAUTH_STATE_SECRET (ephemeral key, well-known dev secrets).
    codiv_dev_mode: bool = False

    token_encryption_keys: SecretStr | None = None
    internal_service_token: SecretStr | None = None
    oauth_state_secret: SecretStr | None = None

    pinterest_env: Literal["production", "sandbox"] = "production"
    pinterest_api_url: str | None = None
    pinterest_oauth_url: str = "https://www.pinterest.com/oauth/"
    pinterest_client_id: str = ""
    pinterest_client_secret: SecretStr = SecretStr("")
    pinterest_scopes: str = DEFAULT_SCOPES
    pinterest_timeout: float = Field(default=30.0, gt=0)
    oauth_redirect_uri: str = "http://127.0.0.1:8081/oauth/pinterest/callback"
    oauth_success_url: str = "http://127.0.0.1:8080/connected"
    oauth_state_ttl: float = Field(default=600.0, gt=0)

    refresh_ahead_ratio: float = Field(default=0.8, gt=0, lt=1)
    refresh_jitter_ratio: float = Field(default=0.05, ge=0, lt=1)
    refresh_interval: float = Field(default=30.0, gt=0)
    refresh_batch_size: int = Field(default=50, ge=1)
    refresh_concurrency: int = Field(default=4, ge=1)
    refresh_lease: float = Field(default=90.0, gt=0)
    refresh_retry_base: float = Field(default=5.0, gt=0)
    refresh_retry_max: float = Field(default=900.0, gt=0)
    access_token_min_validity: float = Field(default=60.0, ge=0)
    invalidate_coalesce_seconds: float = Field(default=10.0, ge=0)
    token_expiring_days: float = Field(
        default=7.0, gt=0, description="warn when the refresh token expires within this"
    )
    token_expiring_min_failures: int = Field(
        default=3, ge=1, description="...and at least this many refreshes failed in a row"
    )

    board_sync_interval: float = Field(default=21600.0, gt=0)
    board_sync_concurrency: int = Field(default=8, ge=1)
    board_sync_lease: float = Field(default=300.0, gt=0)
    callback_sync_timeout: float = Field(default=20.0, ge=0)

    @property
    def api_url(self) -> str:
        """PINTEREST_API_URL when set, else the production or sandbox URL of PINTEREST_ENV."""
        if self.pinterest_api_url:
            return self.pinterest_api_url
        return SANDBOX_API_URL if self.pinterest_env == "sandbox" else PRODUCTION_API_URL

    @property
    def scopes(self) -> tuple[str, ...]:
        return tuple(s.strip() for s in self.pinterest_scopes.split(",") if s.strip())


DEV_INTERNAL_SERVICE_TOKEN = "codiv-dev-internal-service-token"  # noqa: S105 - dev mode only
DEV_OAUTH_STATE_SECRET = "codiv-dev-oauth-state-secret"  # noqa: S105 - dev mode only
DEV_CLIENT_ID = "codiv-dev"
DEV_CLIENT_SECRET = "codiv-dev-secret"  # noqa: S105 - dev mode only


class ConfigError(Exception):
    """The settings cannot run a service (the message says what to set)."""


@dataclass(frozen=True)
class Secrets:
    """The secrets the service runs with, resolved once at start-up."""

    key_ring: KeyRing = field(repr=False)
    internal_service_token: str = field(repr=False)
    oauth_state_secret: bytes = field(repr=False)
    client_id: str
    client_secret: str = field(repr=False)
    warnings: tuple[str, ...] = ()


def _secret(value: SecretStr | None) -> str:
    return value.get_secret_value().strip() if value is not None else ""


def resolve_secrets(settings: Settings) -> Secrets:
    """Check and load the secrets; without CODIV_DEV_MODE=1 every one must be set.

    In dev mode an unset TOKEN_ENCRYPTION_KEYS becomes an ephemeral random key (tokens
    stored with it are unreadable after a restart) and the shared secrets take well-known
    development values; each substitution is returned in ``warnings`` to be logged loudly.
    """
    dev = settings.codiv_dev_mode
    warnings: list[str] = []
    missing: list[str] = []

    keys = _secret(settings.token_encryption_keys)
    if keys:
        try:
            ring = KeyRing.parse(keys)
        except ValueError as exc:
            raise ConfigError(f"TOKEN_ENCRYPTION_KEYS is invalid: {exc}") from None
    elif dev:
        ring = KeyRing.parse(f"dev-ephemeral:{KeyRing.generate_key()}")
        warnings.append(
            "TOKEN_ENCRYPTION_KEYS is unset: using an EPHEMERAL key (CODIV_DEV_MODE=1). Tokens "
            "stored now cannot be decrypted after a restart; never run like this in production."
        )
    else:
        ring = None
        missing.append("TOKEN_ENCRYPTION_KEYS (e.g. k1:<32 random bytes, base64>)")

    def shared(value: SecretStr | None, name: str, dev_value: str) -> str:
        got = _secret(value)
        if got:
            return got
        if dev:
            warnings.append(f"{name} is unset: using the well-known development value")
            return dev_value
        missing.append(name)
        return ""

    internal = shared(
        settings.internal_service_token, "INTERNAL_SERVICE_TOKEN", DEV_INTERNAL_SERVICE_TOKEN
    )
    state = shared(settings.oauth_state_secret, "OAUTH_STATE_SECRET", DEV_OAUTH_STATE_SECRET)
    client_id = settings.pinterest_client_id.strip()
    if not client_id:
        if dev:
            client_id = DEV_CLIENT_ID
            warnings.append("PINTEREST_CLIENT_ID is unset: using a development client id")
        else:
            missing.append("PINTEREST_CLIENT_ID")
    client_secret = shared(
        settings.pinterest_client_secret, "PINTEREST_CLIENT_SECRET", DEV_CLIENT_SECRET
    )
    if missing or ring is None:
        raise ConfigError(
            "auth refuses to start; set "
            + ", ".join(missing)
            + " (or CODIV_DEV_MODE=1 for local development only)"
        )
    return Secrets(
        key_ring=ring,
        internal_service_token=internal,
        oauth_state_secret=state.encode(),
        client_id=client_id,
        client_secret=client_secret,
        warnings=tuple(warnings),
    )
