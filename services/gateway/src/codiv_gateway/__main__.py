"""Run the gateway service: `codiv-gateway`."""

from __future__ import annotations

import os
import sys

from codiv_common.http import run_app
from codiv_common.logging import configure_logging
from pydantic import SecretStr

from .app import create_app
from .settings import Settings

DEV_STATE_SECRET = "codiv-dev-oauth-state-secret"  # noqa: S105 - the published dev value


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format, service="gateway")
    secret = settings.oauth_state_secret.get_secret_value()
    dev_mode = os.environ.get("CODIV_DEV_MODE") == "1"
    if dev_mode and not secret:
        settings = settings.model_copy(update={"oauth_state_secret": SecretStr(DEV_STATE_SECRET)})
    elif not dev_mode and secret in ("", DEV_STATE_SECRET):
        # Anyone knowing the published dev value could forge OAuth states.
        print(
            "codiv-gateway: OAUTH_STATE_SECRET is unset (or the published development value);"
            " set it (the same value as auth's), or CODIV_DEV_MODE=1 for local development",
            file=sys.stderr,
        )
        sys.exit(2)
    run_app(create_app(settings), settings.host, settings.port, settings.shutdown_timeout)


if __name__ == "__main__":
    main()
