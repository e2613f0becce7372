"""Settings of the auth service."""

from __future__ import annotations

from codiv_common.settings import ServiceSettings


class Settings(ServiceSettings):
    """Auth settings (environment variables; see the README's configuration table)."""

    service_name: str = "auth"
    port: int = 8081
