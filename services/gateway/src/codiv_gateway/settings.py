"""Settings of the gateway service."""

from __future__ import annotations

from codiv_common.settings import ServiceSettings


class Settings(ServiceSettings):
    """Gateway settings (environment variables; see the README's configuration table)."""

    service_name: str = "gateway"
    port: int = 8080
