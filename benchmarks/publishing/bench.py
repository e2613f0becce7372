"""Publishing end to end: gateway -> scheduler -> publisher -> Pinterest emulator.

One system (every service its own process, real PostgreSQL and RabbitMQ) runs three
phases; the load generator is its own process (``benchmarks.harness.loadgen``):

- burst: ``burst`` posts spread over ``accounts`` connected profiles, all scheduled for
  the same instant T (chosen after a calibration of the ingest rate, so that every post
  is accepted before T). Emulator and publisher rate limits are raised. Figures: time
  from T until the last pin exists on the emulator, pins per second, lost (accepted
  posts without a pin) and duplicates (pins per unique title above one).
- latency: the same with 200 ms added by the emulator to every API call (concurrency
  has to hide it).
- rate limit: one account, ``rl_posts`` posts due now, the emulator enforcing
  ``rl_limit`` writes per ``rl_window`` seconds and the publisher paced to the same
  rate. Figures: achieved rate / allowed rate between the first and the last pin, and
  the share of create calls answered 429.
- memory: peak resident memory (VmHWM) of every process after the burst phases.

Results: ``benchmarks/results/publishing-<mode>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.harness.stats import machine, print_table
from benchmarks.harness.system import RESULTS, Bench, loadgen, peak_memory, running_system

BIG = 1_000_000_000


@dataclass(frozen=True)
class Plan:
    burst: int
    latency_burst: int
    latency: float
    accounts: int
    publish_concurrency: int
    publisher_replicas: int
    rl_posts: int
    rl_limit: int
    rl_window: int
    calibration: int


FULL = Plan(
    burst=10_000,
    latency_burst=10_000,
    latency=0.2,
    accounts=8,
    publish_concurrency=24,
    publisher_replicas=1,
    rl_posts=1_000,
    rl_limit=100,
    rl_window=10,
    calibration=400,
)
QUICK = Plan(burst=150, latency_burst=100, latency=0.2, accounts=2, publish_concurrency=24,
             publisher_replicas=1, rl_posts=30, rl_limit=20, rl_window=2,
             calibration=60)  # fmt: skip


def body(tag: str, scheduled: datetime | None, profile: str = "p__M__") -> dict[str, Any]:
    b: dict[str, Any] = {
        "profile_name": profile,
        "platforms": ["pinterest"],
        "post_type": "image",
        "title": f"{tag} __N__",
        "description": "Benchmark post",
        "media_urls": ["https://93.184.215.14/images/room.jpg"],
        "pinterest_board_id": "bench",
        "pinterest_link": "https://shop.example.com/p",
    }
    if scheduled is not None:
        b["scheduled_date"] = scheduled.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return b


async def pins_total(bench: Bench) -> int:
    stats = await bench.stats()
    return int(sum(stats["pins_created"].values()))


async def follow_pins(
    bench: Bench, base: int, n: int, stall: float, interval: float = 0.1
) -> list[tuple[float, int]]:
    """Poll the emulator's pin counter until ``n`` new pins exist (or no progress)."""
    samples: list[tuple[float, int]] = []
    last_change = time.time()
    last = -1
    while True:
        got = await pins_total(bench) - base
        now = time.time()
        samples.append((now, got))
        if got != last:
            last, last_change = got, now
        if got >= n or now - last_change > stall:
            return samples
        await asyncio.sleep(interval)


async def audit(bench: Bench, tag: str, n: int) -> dict[str, int]:
    """Lost and duplicated posts of one phase, from the pins on the emulator."""
    titles = Counter(
        p["title"] for p in await bench.pins() if (p["title"] or "").startswith(f"{tag} ")
    )
    return {
        "pins": sum(titles.values()),
        "lost": n - len(titles),
        "duplicates": sum(c - 1 for c in titles.values()),
    }


async def phase_burst(
    bench: Bench, key: str, plan: Plan, n: int, tag: str, rate: float
) -> dict[str, Any]:
    ingest_s = n / rate
    due = datetime.now(UTC) + timedelta(seconds=ingest_s * 1.3 + 5)
    base = await pins_total(bench)
    started = time.time()
    ing = await loadgen([f"{bench.system.gateway_url}/v1/posts"], body(tag, due),
                        headers={"Authorization": f"Bearer {key}"}, count=n,
                        mod=plan.accounts)  # fmt: skip
    ingested_at = time.time()
    t_due = due.timestamp()
    samples = await follow_pins(bench, base, ing["ok"], stall=120)
    done = next((t for t, c in samples if c >= ing["ok"]), None)
    first = next((t for t, c in samples if c > 0), None)
    got = samples[-1][1]
    total = (done - t_due) if done else None
    result = {
        "posts": n,
        "accepted": ing["ok"],
        "ingest_s": round(ingested_at - started, 1),
        "ingest_rps": ing["rps"],
        "ingest_p99_ms": ing["p99_ms"],
        "ingest_overran_due": ingested_at > t_due,
        "pins": got,
        "first_pin_after_due_s": round(first - t_due, 2) if first else None,
        "total_s": round(total, 2) if total else None,
        "pins_per_s": round(ing["ok"] / total, 1) if total else None,
        "complete": done is not None,
        **await audit(bench, tag, n),
    }
    result["lost"] = n - result["pins"] + result["duplicates"]
    return result


async def phase_rate_limit(bench: Bench, plan: Plan) -> dict[str, Any]:
    allowed = plan.rl_limit / plan.rl_window
    await bench.emulator_user("rl_user")
    key = await bench.workspace("rl")
    await bench.connect(key, "rl", "rl_user")
    await bench.restart("publisher", {"WRITES_PER_MINUTE": str(allowed * 60)})
    await bench.client.emulator("PUT", "/rate-limits", {
        "per_user": {"org_write": plan.rl_limit, "org_read": BIG, "org_analytics": BIG},
        "window_seconds": plan.rl_window})  # fmt: skip
    before = await bench.stats()
    base = int(sum(before["pins_created"].values()))
    ing = await loadgen([f"{bench.system.gateway_url}/v1/posts"], body("rl", None, "rl"),
                        headers={"Authorization": f"Bearer {key}"}, count=plan.rl_posts,
                        concurrency=16)  # fmt: skip
    samples = await follow_pins(bench, base, ing["ok"], stall=max(60, 6 * plan.rl_window))
    after = await bench.stats()
    first = next((t for t, c in samples if c > 0), None)
    last = next((t for t, c in samples if c >= ing["ok"]), None)
    creates = after["operations"].get("pins/create", 0) - before["operations"].get("pins/create", 0)
    r429 = after["rate_limited_total"] - before["rate_limited_total"]
    achieved = (ing["ok"] - 1) / (last - first) if first and last and last > first else None
    return {
        "posts": plan.rl_posts,
        "accepted": ing["ok"],
        "allowed_per_s": allowed,
        "achieved_per_s": round(achieved, 2) if achieved else None,
        "share_of_allowed": round(achieved / allowed, 3) if achieved else None,
        "create_calls": creates + r429,
        "answered_429": r429,
        "share_429": round(r429 / (creates + r429), 4) if creates + r429 else None,
        "complete": last is not None,
        **await audit(bench, "rl", plan.rl_posts),
    }


async def run(plan: Plan, quick: bool) -> dict[str, Any]:
    result: dict[str, Any] = {"mode": "quick" if quick else "full", **machine(),
                              "plan": asdict(plan)}  # fmt: skip
    print(f"nproc={result['nproc']} mode={result['mode']} load={result['load_avg_at_start']}")
    env = {"RATE_LIMIT_PRO": str(BIG), "WRITES_PER_MINUTE": str(BIG)}
    publisher_env = {
        "PUBLISH_CONCURRENCY": str(plan.publish_concurrency),
        "DATABASE_POOL_MAX": str(plan.publish_concurrency + 4),
    }
    result["settings"] = {**env, **publisher_env, "LOG_LEVEL": "WARNING"}
    async with running_system({"publisher": plan.publisher_replicas}, env, "pub") as bench:
        await bench.restart("publisher", publisher_env)
        await bench.client.emulator("PUT", "/rate-limits", {"per_user": {
            "org_write": BIG, "org_read": BIG, "org_analytics": BIG}})  # fmt: skip
        key = await bench.workspace("burst")
        for i in range(plan.accounts):
            await bench.emulator_user(f"bench{i}")
            await bench.connect(key, f"p{i}", f"bench{i}")
        far = datetime.now(UTC) + timedelta(days=1)
        cal = await loadgen([f"{bench.system.gateway_url}/v1/posts"], body("cal", far),
                            headers={"Authorization": f"Bearer {key}"}, count=plan.calibration,
                            mod=plan.accounts)  # fmt: skip
        rate = max(20.0, cal["rps"])
        result["calibration_rps"] = cal["rps"]
        print(f"calibration: ingest {cal['rps']} posts/s", flush=True)

        result["burst"] = await phase_burst(bench, key, plan, plan.burst, "burst", rate)
        print(f"burst: {result['burst']}", flush=True)
        result["memory_after_burst"] = peak_memory(bench.system)

        await bench.client.emulator("POST", "/faults", {"kind": "latency", "path": "/v5/.*",
                                                        "seconds": plan.latency})  # fmt: skip
        result["latency"] = await phase_burst(bench, key, plan, plan.latency_burst, "lat", rate)
        result["latency"]["added_latency_s"] = plan.latency
        await bench.client.emulator("DELETE", "/faults")
        print(f"latency: {result['latency']}", flush=True)
        result["memory"] = peak_memory(bench.system)
        print(f"memory: {result['memory']}", flush=True)

        result["rate_limit"] = await phase_rate_limit(bench, plan)
        print(f"rate limit: {result['rate_limit']}", flush=True)
    return result


def _fmt(v: Any, unit: str = "") -> str:
    return "-" if v is None else f"{v}{unit}"


def rows(r: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    b, lat, rl, p = r["burst"], r["latency"], r["rate_limit"], r["plan"]

    def ok(cond: bool) -> str:
        return "yes" if cond else "NO"

    out = [
        (f"{b['posts']:,} due at once, no latency: total time (due -> last pin)",
         _fmt(b["total_s"], " s"), "-", "-"),
        ("  pins per second", _fmt(b["pins_per_s"]), ">= 1,000",
         ok((b["pins_per_s"] or 0) >= 1000)),
        ("  lost / duplicates", f"{b['lost']} / {b['duplicates']}", "0 / 0",
         ok(b["lost"] == 0 and b["duplicates"] == 0)),
        (f"{lat['posts']:,} due at once, {int(p['latency'] * 1000)} ms emulator latency: "
         "pins per second", _fmt(lat["pins_per_s"]), ">= 500",
         ok((lat["pins_per_s"] or 0) >= 500)),
        ("  total time / lost / duplicates",
         f"{_fmt(lat['total_s'], ' s')} / {lat['lost']} / {lat['duplicates']}", "- / 0 / 0",
         ok(lat["lost"] == 0 and lat["duplicates"] == 0)),
        (f"rate limit, one account, {rl['posts']:,} posts, {p['rl_limit']}/{p['rl_window']} s:"
         " share of allowed rate used", _fmt(rl["share_of_allowed"]), ">= 0.95",
         ok((rl["share_of_allowed"] or 0) >= 0.95)),
        ("  share of create calls answered 429",
         f"{_fmt(rl['share_429'])} ({rl['answered_429']} of {rl['create_calls']})", "< 0.01",
         ok(rl["share_429"] is not None and rl["share_429"] < 0.01)),
        ("  lost / duplicates", f"{rl['lost']} / {rl['duplicates']}", "0 / 0",
         ok(rl["lost"] == 0 and rl["duplicates"] == 0)),
    ]  # fmt: skip
    for name, m in sorted(r["memory"].items()):
        out.append((f"peak RSS {name}", f"{m['VmHWM']} MB (now {m['VmRSS']} MB)", "-", "-"))
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.publishing")
    parser.add_argument("--quick", action="store_true", help="smoke run, about a minute")
    parser.add_argument("--out", type=Path, default=None, help="JSON result path")
    parser.add_argument("--publish-concurrency", type=int, default=None)
    parser.add_argument("--publisher-replicas", type=int, default=None)
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.publish_concurrency:
        plan = Plan(**{**asdict(plan), "publish_concurrency": args.publish_concurrency})
    if args.publisher_replicas:
        plan = Plan(**{**asdict(plan), "publisher_replicas": args.publisher_replicas})
    result = asyncio.run(run(plan, args.quick))
    print_table(f"publishing benchmark ({result['mode']}), nproc={result['nproc']}, "
                f"{result['started_at']}", rows(result))  # fmt: skip
    if result["mode"] == "quick":
        print("(quick smoke run: small numbers, the targets apply to the full run)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = args.out or RESULTS / f"publishing-{result['mode']}.json"
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"results: {out}")
    bad = [
        name
        for name in ("burst", "latency", "rate_limit")
        if result[name]["lost"] or result[name]["duplicates"]
    ]
    if bad:
        print(f"ERROR: lost or duplicated posts in: {', '.join(bad)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
