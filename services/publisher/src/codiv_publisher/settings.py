"""Settings of the publisher service."""

from __future__ import annotations

from codiv_common.settings import ServiceSettings


class Settings(ServiceSettings):
    """Publisher settings (environment variables; see the README's configuration table)."""

    service_name: str = "publisher"
    port: int = 8083
