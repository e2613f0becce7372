"""The ingest benchmark's --quick run works end to end (so the bench never rots)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


def test_ingest_benchmark_quick_smoke(pg_server_url: str, amqp_url: str, tmp_path: Path) -> None:
    out = tmp_path / "ingest-quick.json"
    env = {**os.environ, "BENCH_PG_URL": pg_server_url, "BENCH_AMQP_URL": amqp_url}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.ingest", "--quick", "--out", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "gateway POST /v1/posts" in proc.stdout
    result = json.loads(out.read_text())
    assert result["nproc"] == os.cpu_count()
    for server in ("bare", "gateway"):
        run = result[server]["runs"][0]
        assert run["ok"] > 0, run
        assert run["ok"] == run["requests"], run
        assert result[server]["errors"] == 0
        assert 0 < run["cpu_share"] < 2
    assert result["ratio"] > 0
