"""Settings of the scheduler service."""

from __future__ import annotations

from codiv_common.settings import ServiceSettings


class Settings(ServiceSettings):
    """Scheduler settings (environment variables; see the README's configuration table)."""

    service_name: str = "scheduler"
    port: int = 8082
