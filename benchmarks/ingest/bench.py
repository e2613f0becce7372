"""Ingest: sustained POST /v1/posts throughput and latency at 64 concurrent clients.

Two servers are measured in the same run with the same load generator (its own process,
64 closed-loop clients, ``benchmarks.harness.loadgen``):

- bare: an aiohttp endpoint that parses the same JSON and answers 202 (the framework's
  floor on this machine; the generator's own CPU share against it shows whether the
  generator could go faster);
- gateway: the real ``POST /v1/posts`` (API key auth, validation and SSRF check, rate
  limit counter, one transaction with the post, its timeline and the outbox row, relay
  to RabbitMQ) for a workspace on the pro plan with ``RATE_LIMIT_PRO`` raised. The posts
  are scheduled a day ahead; the scheduler and publisher are stopped during the runs so
  that the figure is the gateway's (with PostgreSQL and RabbitMQ), not theirs.

Each server gets a warm-up, then ``reps`` runs of ``duration`` seconds; the table shows
the median and the spread (min..max). Results: ``benchmarks/results/ingest-<mode>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from codiv_devtools.processes import ServiceProcess, free_port

from benchmarks.harness.stats import fmt_spread, machine, print_table, spread
from benchmarks.harness.system import RESULTS, loadgen, running_system


@dataclass(frozen=True)
class Plan:
    concurrency: int
    warmup: float
    duration: float
    reps: int
    gateway_replicas: int


FULL = Plan(concurrency=64, warmup=5.0, duration=15.0, reps=3, gateway_replicas=1)
QUICK = Plan(concurrency=64, warmup=0.5, duration=1.5, reps=1, gateway_replicas=1)


def post_body(tag: str) -> dict[str, Any]:
    """The request both servers get: a realistic image post, unique title per request."""
    when = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
    return {
        "profile_name": "bench",
        "platforms": ["pinterest"],
        "post_type": "image",
        "title": f"{tag} __N__",
        "description": "Minimalist living room, spring collection, oak and linen",
        # A public address literal: the SSRF check runs, without depending on DNS here.
        "media_urls": ["https://93.184.215.14/images/room.jpg"],
        "pinterest_board_id": "bench",
        "pinterest_link": "https://shop.example.com/living-room",
        "pinterest_alt_text": "White sofa with a wooden coffee table",
        "scheduled_date": when.isoformat().replace("+00:00", "Z"),
    }


async def measure(
    urls: list[str], body: dict[str, Any], plan: Plan, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    await loadgen(urls, body, headers=headers, concurrency=plan.concurrency,
                  duration=plan.warmup, warmup=0)  # fmt: skip
    runs = []
    for _ in range(plan.reps):
        runs.append(
            await loadgen(
                urls, body, headers=headers, concurrency=plan.concurrency,
                duration=plan.duration, warmup=0.5,
            )
        )  # fmt: skip
        print(f"  run: {json.dumps(runs[-1])}", flush=True)
    return {
        "runs": runs,
        "rps": spread([r["rps"] for r in runs]),
        "p50_ms": spread([r["p50_ms"] for r in runs], 2),
        "p99_ms": spread([r["p99_ms"] for r in runs], 2),
        "loadgen_cpu_share": spread([r["cpu_share"] for r in runs], 2),
        "non_2xx": sum(r["requests"] - r["ok"] for r in runs),
        "errors": sum(sum(r["errors"].values()) for r in runs),
    }


async def bench_bare(plan: Plan, log_dir: Path) -> dict[str, Any]:
    port = free_port()
    bare = ServiceProcess("python", {"PORT": str(port)}, log_dir, name="bare",
                          args=("-m", "benchmarks.harness.bare", "--port", str(port)))  # fmt: skip
    bare.start()
    try:
        await bare.wait_status("/healthz", 200, 30)
        return await measure([f"{bare.base_url}/v1/posts"], post_body("bare"), plan)
    finally:
        bare.stop()


async def bench_gateway(plan: Plan) -> dict[str, Any]:
    env = {"RATE_LIMIT_PRO": "1000000000"}
    async with running_system({"gateway": plan.gateway_replicas}, env, tag="ingest") as bench:
        await bench.emulator_user("bench_user")
        key = await bench.workspace("ingest")
        await bench.connect(key, "bench", "bench_user")
        for name in ("scheduler", "publisher"):
            for proc in bench.system.processes[name]:
                proc.stop()
        urls = [f"{bench.system.url('gateway', i)}/v1/posts" for i in range(plan.gateway_replicas)]
        result = await measure(urls, post_body("gw"), plan, {"Authorization": f"Bearer {key}"})
        result["gateway_replicas"] = plan.gateway_replicas
        return result


async def run(plan: Plan, quick: bool) -> dict[str, Any]:
    result: dict[str, Any] = {"mode": "quick" if quick else "full", **machine(),
                              "plan": asdict(plan)}  # fmt: skip
    print(f"nproc={result['nproc']} mode={result['mode']} load={result['load_avg_at_start']}")
    log_dir = RESULTS / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    print("bare aiohttp endpoint:", flush=True)
    result["bare"] = await bench_bare(plan, log_dir)
    print("gateway POST /v1/posts:", flush=True)
    result["gateway"] = await bench_gateway(plan)
    b, g = result["bare"]["rps"]["median"], result["gateway"]["rps"]["median"]
    result["ratio"] = round(g / b, 3) if b else None
    return result


def rows(r: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    b, g, c = r["bare"], r["gateway"], r["plan"]["concurrency"]
    ratio_ok = r["ratio"] is not None and r["ratio"] >= 0.5
    p99_ok = g["p99_ms"]["median"] is not None and g["p99_ms"]["median"] < 50
    return [
        (f"bare aiohttp endpoint, {c} clients: throughput", fmt_spread(b["rps"], " req/s"),
         "baseline", "-"),
        ("bare: latency p50 / p99", f"{fmt_spread(b['p50_ms'], ' ms')} / "
         f"{fmt_spread(b['p99_ms'], ' ms')}", "-", "-"),
        ("load generator CPU share against bare (1.0 = saturated)",
         fmt_spread(b["loadgen_cpu_share"]), "< 1.0", "yes" if
         (b["loadgen_cpu_share"]["max"] or 0) < 0.95 else "NO"),
        (f"gateway POST /v1/posts, {c} clients: throughput", fmt_spread(g["rps"], " req/s"),
         ">= 50% of bare", f"{'yes' if ratio_ok else 'NO'} ({r['ratio']:.0%})"),
        ("gateway: latency p50", fmt_spread(g["p50_ms"], " ms"), "-", "-"),
        ("gateway: latency p99", fmt_spread(g["p99_ms"], " ms"), "< 50 ms",
         "yes" if p99_ok else "NO"),
        ("gateway: non-2xx answers / transport errors", f"{g['non_2xx']} / {g['errors']}",
         "0 / 0", "yes" if g["non_2xx"] == 0 and g["errors"] == 0 else "NO"),
    ]  # fmt: skip


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ingest")
    parser.add_argument("--quick", action="store_true", help="smoke run, well under a minute")
    parser.add_argument("--out", type=Path, default=None, help="JSON result path")
    parser.add_argument("--gateway-replicas", type=int, default=None)
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.gateway_replicas:
        plan = Plan(**{**asdict(plan), "gateway_replicas": args.gateway_replicas})
    result = asyncio.run(run(plan, args.quick))
    print_table(f"ingest benchmark ({result['mode']}), nproc={result['nproc']}, "
                f"{result['started_at']}", rows(result))  # fmt: skip
    if result["mode"] == "quick":
        print("(quick smoke run: short runs, the targets apply to the full run)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = args.out or RESULTS / f"ingest-{result['mode']}.json"
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"results: {out}")
    g = result["gateway"]
    if g["runs"] and all(run["ok"] == 0 for run in g["runs"]):
        print("ERROR: the gateway accepted no post")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
