"""Settings of the scheduler service."""

from __future__ import annotations

import os
import socket

from codiv_common.settings import ServiceSettings
from pydantic import Field


def _default_replica_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Settings(ServiceSettings):
    """Scheduler settings (environment variables; see the README's configuration table)."""

    service_name: str = "scheduler"
    port: int = 8082
    scheduler_batch_size: int = Field(default=500, ge=1, le=10_000)
    scheduler_max_sleep: float = Field(default=30.0, gt=0)
    scheduler_contention_backoff_max: float = Field(default=0.5, gt=0)
    scheduler_pending_sample_interval: float = Field(default=15.0, gt=0)
    scheduler_job_retention_days: float = Field(
        default=14.0, gt=0, description="released and cancelled jobs are purged after this"
    )
    scheduler_replica_id: str = Field(default_factory=_default_replica_id, min_length=1)
    # Fault injection for failure tests only: keep each claimed batch uncommitted this long.
    scheduler_fault_hold_batch: float = Field(default=0.0, ge=0)
