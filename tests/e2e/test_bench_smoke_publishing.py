"""The publishing benchmark's --quick run works end to end: no post lost or doubled."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


def test_publishing_benchmark_quick_smoke(
    pg_server_url: str, amqp_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "publishing-quick.json"
    env = {**os.environ, "BENCH_PG_URL": pg_server_url, "BENCH_AMQP_URL": amqp_url}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.publishing", "--quick", "--out", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    for phase in ("burst", "latency", "rate_limit"):
        r = result[phase]
        assert r["complete"], r
        assert r["accepted"] == r["posts"], r
        assert r["lost"] == 0, r
        assert r["duplicates"] == 0, r
    assert result["burst"]["pins_per_s"] > 0
    assert result["rate_limit"]["share_of_allowed"] > 0
    assert set(result["memory"]) >= {"gateway", "scheduler", "publisher", "auth"}
    assert all(m["VmHWM"] > 0 for m in result["memory"].values())
