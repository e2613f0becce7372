"""Webhooks and account-health integration fixtures."""

from __future__ import annotations

# The publisher's in-process harness (emulator, stand-in auth and scheduler), reused as is.
from integration.publisher.conftest import harness, publisher_settings  # noqa: F401
