"""Run the publisher service: `codiv-publisher`."""

from __future__ import annotations

from codiv_common.http import run_app
from codiv_common.logging import configure_logging

from .app import create_app
from .settings import Settings


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format, service="publisher")
    run_app(create_app(settings), settings.host, settings.port, settings.shutdown_timeout)


if __name__ == "__main__":
    main()
