"""Settings of the gateway service."""

from __future__ import annotations

from codiv_common.settings import ServiceSettings
from pydantic import Field, SecretStr


class Settings(ServiceSettings):
    """Gateway settings (environment variables; see the service README's table)."""

    service_name: str = "gateway"
    port: int = 8080
    public_base_url: str = "http://127.0.0.1:8080"
    rate_limit_free: int = Field(default=100, ge=1, description="requests per window, free plan")
    rate_limit_pro: int = Field(default=100, ge=1, description="requests per window, pro plan")
    rate_limit_window_seconds: int = Field(default=60, ge=1, le=3600)
    free_max_profiles: int = Field(default=2, ge=0)
    free_max_uploads_per_month: int = Field(default=10, ge=0)
    idempotency_ttl_hours: float = Field(default=24.0, gt=0)
    allow_loopback_media: bool = False
    media_resolve_timeout: float = Field(default=3.0, gt=0)
    media_fetch_timeout: float = Field(default=8.0, gt=0)
    # Defaults are the well-known development values auth uses in CODIV_DEV_MODE.
    oauth_state_secret: SecretStr = SecretStr("codiv-dev-oauth-state-secret")
    oauth_state_ttl_seconds: int = Field(default=600, ge=60)
    pinterest_client_id: str = "codiv-dev"
    pinterest_oauth_url: str = "https://www.pinterest.com/oauth/"
    oauth_redirect_uri: str = "http://127.0.0.1:8081/oauth/pinterest/callback"
    ingest_producers: dict[str, list[str]] = Field(
        default_factory=dict,
        description=(
            'JSON: RabbitMQ user -> workspace ids it may post for ("*" = any), e.g. '
            '{"orders-service": ["2b0e..."]}. Producers not listed are refused.'
        ),
    )
    pinterest_scopes: str = "boards:read,boards:write,pins:read,pins:write,user_accounts:read"
    # Webhooks (webhook_api.py, webhook_worker.py).
    webhook_secret_keys: SecretStr = Field(
        default=SecretStr(""),
        description="key ring kid:base64key[,...] encrypting signing secrets; unset: a key "
        "derived from OAUTH_STATE_SECRET (kid 'derived')",
    )
    allow_loopback_webhooks: bool = Field(
        default=False, description="dev/test only: http and loopback webhook URLs"
    )
    webhook_timeout: float = Field(default=10.0, gt=0, le=60)
    webhook_retry_base: float = Field(default=30.0, gt=0)
    webhook_retry_max: float = Field(default=3600.0, gt=0)
    webhook_retry_hours: float = Field(default=24.0, gt=0)
    webhook_poll_interval: float = Field(default=1.0, gt=0)
    webhook_batch_size: int = Field(default=50, ge=1, le=1000)
    webhook_concurrency: int = Field(default=16, ge=1, le=256)
