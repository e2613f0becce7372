"""The scheduler benchmark's --quick smoke run works end to end (so the bench never rots)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[3]


def test_scheduler_benchmark_quick_smoke(pg_server_url: str, amqp_url: str, tmp_path: Path) -> None:
    out = tmp_path / "scheduler-quick.json"
    env = {**os.environ, "BENCH_PG_URL": pg_server_url, "BENCH_AMQP_URL": amqp_url}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.scheduler", "--quick", "--out", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "nproc=" in proc.stdout
    assert "sleep-until-deadline floor" in proc.stdout
    result = json.loads(out.read_text())
    assert result["nproc"] == os.cpu_count()
    assert result["steady"]["missing"] == 0
    assert result["steady"]["early"] == 0
    assert result["burst"]["missing"] == 0
    assert result["burst"]["early"] == 0
    assert result["batch_large"]["pending"] >= result["plan"]["pending_large"]
    assert result["rss_large_pending_mb"] > 0
    assert result["duplicates_received"] == 0
