"""Environment-driven settings shared by every Codiv service."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/codiv"
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


class ServiceSettings(BaseSettings):
    """Settings every service has; each service subclasses it and adds its own.

    Values come from the environment only (upper-case names, e.g. ``DATABASE_URL``).
    Secrets are ``SecretStr`` so that they never show in a repr or a log line.
    """

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    service_name: str = "codiv"
    database_url: SecretStr = SecretStr(DEFAULT_DATABASE_URL)
    database_pool_min: int = Field(default=1, ge=0)
    database_pool_max: int = Field(default=10, ge=1)
    amqp_url: SecretStr = SecretStr(DEFAULT_AMQP_URL)
    amqp_exchange: str = "codiv"
    amqp_queue_prefix: str = ""
    amqp_delivery_limit: int = Field(default=10, ge=1)
    amqp_confirm_timeout: float = Field(default=10.0, gt=0)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    shutdown_timeout: float = Field(default=20.0, gt=0)
    outbox_batch_size: int = Field(default=200, ge=1)
    outbox_poll_interval: float = Field(default=1.0, gt=0)
    dependency_retry_max_delay: float = Field(default=5.0, gt=0)
    inbox_retention_days: float = Field(
        default=7.0,
        gt=0,
        description="how long processed event ids are kept for de-duplication",
    )
