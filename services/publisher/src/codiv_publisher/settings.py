"""Settings of the publisher service."""

from __future__ import annotations

from codiv_common.settings import ServiceSettings
from pydantic import Field, SecretStr, model_validator


class Settings(ServiceSettings):
    """Publisher settings (environment variables; see the README's configuration table)."""

    service_name: str = "publisher"
    port: int = 8083
    # One pooled connection is held per message being handled (it carries the post's
    # advisory lock), so the pool must be larger than the consumer's concurrency.
    database_pool_max: int = Field(default=16, ge=2)

    auth_url: str = "http://127.0.0.1:8081"
    internal_service_token: SecretStr = SecretStr("")
    auth_timeout: float = Field(default=10.0, gt=0)
    token_expiry_margin: float = Field(
        default=120.0, ge=0, description="seconds before expires_at a cached token is dropped"
    )

    pinterest_api_url: str = "https://api.pinterest.com/v5"
    pinterest_timeout: float = Field(default=30.0, gt=0)
    pinterest_upload_timeout: float = Field(default=600.0, gt=0)

    publish_concurrency: int = Field(default=8, ge=1, le=256)
    writes_per_minute: float = Field(default=100.0, gt=0)
    pacing_max_wait: float = Field(
        default=3.0, ge=0, description="wait in the consumer for a slot at most this long"
    )
    rate_limit_backoff: float = Field(
        default=15.0, gt=0, description="account pause after a 429 without Retry-After"
    )

    max_attempts: int = Field(default=10, ge=1)
    max_rate_limited: int = Field(
        default=40,
        ge=1,
        description="429 answers one post may get before it fails (429s do not count "
        "against MAX_ATTEMPTS: they slow a post down)",
    )
    busy_recheck_delay: float = Field(
        default=30.0,
        gt=0,
        description="seconds before re-checking a post.due that found the post held by "
        "another worker",
    )
    retry_base_delay: float = Field(default=15.0, gt=0)
    retry_max_delay: float = Field(default=900.0, gt=0)
    reconcile_skew: float = Field(default=120.0, ge=0)
    pause_grace_hours: float = Field(
        default=72.0, gt=0, description="paused posts (account needs reauth) fail after this"
    )
    pause_check_interval: float = Field(default=60.0, gt=0)

    video_max_bytes: int = Field(default=1024**3, gt=0)
    download_timeout: float = Field(default=300.0, gt=0)
    download_connect_timeout: float = Field(default=10.0, gt=0)
    media_poll_initial: float = Field(default=2.0, gt=0)
    media_poll_max: float = Field(default=30.0, gt=0)
    media_processing_timeout: float = Field(default=1800.0, gt=0)
    allow_loopback_media: bool = Field(
        default=False, description="dev/test only: allow media URLs on loopback addresses"
    )
    temp_dir: str | None = None

    # Analytics collection (metrics_collector.py).
    analytics_enabled: bool = True
    analytics_calls_per_minute: float = Field(
        default=60.0, gt=0, description="Pinterest org_analytics calls per account per minute"
    )
    analytics_batch_size: int = Field(default=100, ge=1, le=1000)
    analytics_poll_interval: float = Field(default=15.0, gt=0)
    analytics_max_wait: float = Field(
        default=60.0, ge=0, description="hold a leased row for its slot at most this long"
    )
    analytics_lease: float = Field(default=600.0, gt=0)
    analytics_clock_url: str | None = Field(
        default=None,
        description="tests only: a clock endpoint answering {now}; 'emulator' = the "
        "emulator's /_emulator/clock next to PINTEREST_API_URL",
    )

    @model_validator(mode="after")
    def _pool_fits_concurrency(self) -> Settings:
        if self.database_pool_max < self.publish_concurrency + 2:
            raise ValueError("DATABASE_POOL_MAX must be at least PUBLISH_CONCURRENCY + 2")
        return self
