"""Helpers shared by the test tiers (re-exported from codiv_devtools)."""

from __future__ import annotations

from codiv_devtools.processes import ServiceProcess, free_port, wait_until

__all__ = ["ServiceProcess", "free_port", "wait_until"]
