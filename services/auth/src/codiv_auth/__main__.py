"""Run the auth service: `codiv-auth`."""

from __future__ import annotations

import sys

from codiv_common.http import run_app
from codiv_common.logging import configure_logging, get_logger

from .app import create_app
from .settings import ConfigError, Settings


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format, service="auth")
    try:
        app = create_app(settings)
    except ConfigError as exc:
        get_logger(__name__).error("configuration_error", detail=str(exc))
        print(f"codiv-auth: {exc}", file=sys.stderr)
        sys.exit(2)
    run_app(app, settings.host, settings.port, settings.shutdown_timeout)


if __name__ == "__main__":
    main()
