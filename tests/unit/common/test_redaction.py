"""Secrets never reach a log line."""

from __future__ import annotations

import json

import pytest
import structlog
from codiv_common.logging import configure_logging, redact_text

ACCESS = "pina_AMAZXWQWAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
REFRESH = "pinr_ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ"


@pytest.mark.parametrize(
    "text",
    [
        f"Authorization: Bearer {ACCESS}",
        f"calling with access_token={ACCESS}&x=1",
        f'{{"refresh_token": "{REFRESH}"}}',
        f"token {ACCESS} failed",
        "postgresql://codiv:s3cretpass@db:5432/codiv",
        "Basic Y2xpZW50OnNlY3JldA==",
        "https://app/callback?code=abc123def&state=xyz",
    ],
)
def test_redact_text(text: str) -> None:
    out = redact_text(text)
    for secret in (ACCESS, REFRESH, "s3cretpass", "Y2xpZW50OnNlY3JldA==", "abc123def"):
        assert secret not in out


def test_log_lines_never_show_tokens(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json", service="test")
    log = structlog.get_logger()
    log.info(
        "calling_pinterest",
        headers={"Authorization": f"Bearer {ACCESS}", "Accept": "application/json"},
        access_token=ACCESS,
        refresh_token=REFRESH,
        note=f"sent {ACCESS}",
        nested=[{"client_secret": "abc"}],
    )
    try:
        raise ValueError(f"refresh failed for refresh_token={REFRESH}")
    except ValueError:
        log.exception("refresh_failed")
    err = capsys.readouterr().err
    assert ACCESS not in err
    assert REFRESH not in err
    assert '"abc"' not in err
    lines = [json.loads(line) for line in err.strip().splitlines()]
    assert lines[0]["headers"]["Accept"] == "application/json"
    assert lines[0]["headers"]["Authorization"] == "[REDACTED]"
    assert lines[0]["event"] == "calling_pinterest"


def test_stdlib_logging_is_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    configure_logging("INFO", "json", service="test")
    logging.getLogger("somelib").warning("sending Authorization: Bearer %s", ACCESS)
    assert ACCESS not in capsys.readouterr().err


def test_paths_with_token_words_are_kept() -> None:
    path = "/internal/v1/accounts/42/access-token:invalidate"
    assert redact_text(f"POST {path} 200") == f"POST {path} 200"
