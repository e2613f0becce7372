"""Closed-loop HTTP load generator, run as its own process so it never shares a loop with a server.

``python -m benchmarks.harness.loadgen --url U --body-file F [--duration S --warmup W | --count N]``

``--concurrency`` workers (64 by default) each send one request at a time over a shared
connection pool. The body is the file's text with ``__N__`` replaced by a per-request
sequence number (unique titles) and ``__M__`` by that number modulo ``--mod`` (to spread
posts over profiles). In duration mode only requests that finish after the
warm-up count. It prints one JSON line: requests, statuses, latency percentiles,
throughput, and its own CPU use (``cpu_share`` near 1.0 means the generator itself was
the bottleneck). In count mode ``--ids-out`` writes ``{"n": ..., "id": ...}`` lines.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    k = min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))
    return values[k]


async def run(args: argparse.Namespace, template: str) -> dict[str, Any]:
    headers = {"Content-Type": "application/json"}
    for h in args.header:
        name, _, value = h.partition(":")
        headers[name.strip()] = value.strip()
    urls: list[str] = args.url
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    ids: list[dict[str, Any]] = []
    seq = 0
    measuring_from = 0.0
    stop_at = float("inf")
    total = args.count
    connector = aiohttp.TCPConnector(limit=args.concurrency, limit_per_host=args.concurrency)
    timeout = aiohttp.ClientTimeout(total=args.request_timeout)

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker(w: int) -> None:
            nonlocal seq
            url = urls[w % len(urls)]
            while True:
                if total is not None and seq >= total:
                    return
                if time.perf_counter() >= stop_at:
                    return
                n = seq
                seq += 1
                body = (
                    template.replace("__N__", str(n)).replace("__M__", str(n % args.mod)).encode()
                )
                started = time.perf_counter()
                try:
                    async with session.post(url, data=body, headers=headers) as resp:
                        payload = await resp.read()
                        status = resp.status
                except (aiohttp.ClientError, TimeoutError) as exc:
                    if started >= measuring_from:
                        errors[type(exc).__name__] += 1
                    continue
                ended = time.perf_counter()
                if started >= measuring_from:
                    statuses[status] += 1
                    latencies.append(ended - started)
                    if args.ids_out and status in (200, 201, 202):
                        ids.append({"n": n, "id": json.loads(payload).get("id")})

        cpu0 = time.process_time()
        t0 = time.perf_counter()
        if total is None:
            measuring_from = t0 + args.warmup
            stop_at = measuring_from + args.duration
        else:
            measuring_from = t0
        await asyncio.gather(*(worker(i) for i in range(args.concurrency)))
        t1 = time.perf_counter()
        cpu1 = time.process_time()
    elapsed = t1 - measuring_from
    latencies.sort()
    ok = sum(c for s, c in statuses.items() if 200 <= s < 300)
    return {
        "ids": ids,
        "requests": sum(statuses.values()),
        "ok": ok,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "errors": dict(errors),
        "elapsed_s": round(elapsed, 3),
        "rps": round(ok / elapsed, 1) if elapsed > 0 else 0.0,
        "p50_ms": round(_pct(latencies, 50) * 1000, 2),
        "p90_ms": round(_pct(latencies, 90) * 1000, 2),
        "p99_ms": round(_pct(latencies, 99) * 1000, 2),
        "max_ms": round(latencies[-1] * 1000, 2) if latencies else float("nan"),
        "concurrency": args.concurrency,
        # Over the whole run including warm-up: the generator's own load.
        "cpu_share": round((cpu1 - cpu0) / (t1 - t0), 3) if t1 > t0 else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.harness.loadgen")
    parser.add_argument("--url", action="append", required=True)
    parser.add_argument("--body-file", required=True)
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--count", type=int, default=None)
    parser.add_argument("--request-timeout", type=float, default=60.0)
    parser.add_argument("--ids-out", default=None)
    parser.add_argument("--mod", type=int, default=1)
    args = parser.parse_args()
    result = asyncio.run(run(args, Path(args.body_file).read_text()))
    ids = result.pop("ids")
    if args.ids_out:
        Path(args.ids_out).write_text("".join(json.dumps(i) + "\n" for i in ids))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
