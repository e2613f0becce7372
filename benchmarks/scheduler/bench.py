"""Scheduler benchmark against real PostgreSQL and RabbitMQ, printed as a table.

What it measures (the scheduler runs as its own process, ``codiv-scheduler``):

- floor: a bare asyncio loop that only sleeps until a deadline (overshoot), in this process;
- steady: post.requested published at a steady rate, each due ``LEAD`` seconds later; lag =
  the instant the benchmark's consumer of post.due receives it minus its due time (so it
  includes the release, the outbox relay, RabbitMQ and delivery);
- burst: N jobs due within the same second (written straight into the scheduler's table,
  plus the NOTIFY the consumer would send); lag per job and when the last one arrived;
- batch: time of one ``ReleaseLoop.release_batch`` (claim with SKIP LOCKED, mark released,
  write the outbox rows, commit) and of the next-due query, with 1,000 and then 1,000,000
  jobs pending (the service is stopped during this phase so that it does not compete);
- rss: the scheduler process' resident memory (``/proc/<pid>/status``) after it was
  restarted with 1,000,000 jobs pending and has released a batch and sampled the count.

Everything runs in a dedicated database and exchange, removed at the end. Figures are
printed and written as JSON under ``benchmarks/results/`` (gitignored). Environment:
``BENCH_PG_URL`` (a database on the server, default the local ``postgres``) and
``BENCH_AMQP_URL``. ``--quick`` is a smoke run (< 30 s) with small numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import aiohttp
import asyncpg
from aio_pika.abc import AbstractIncomingMessage
from codiv_common import broker as b
from codiv_common.db import create_pool, migrate_dsn
from codiv_common.events import PostContent, PostRequested, PostRequestedEvent
from codiv_common.logging import configure_logging
from codiv_common.metrics import Metrics
from codiv_common.runtime import SHARED_MIGRATIONS
from codiv_scheduler.app import SCHEMA, SPEC
from codiv_scheduler.metrics import SchedulerMetrics
from codiv_scheduler.service import ReleaseLoop, ReleaseSettings

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "results"
CONTENT = PostContent(
    post_type="image", board_id="123", title="bench", media_urls=["https://example.com/a.jpg"]
)
WS = uuid.UUID("00000000-0000-4000-8000-0000000be7c4")


@dataclass(frozen=True)
class Plan:
    floor_samples: int
    steady_rate: float  # jobs per second
    steady_seconds: float
    lead: float  # seconds between publishing a request and its due time
    burst: int
    pending_large: int
    batch: int
    batch_reps: int


FULL = Plan(500, 50, 30, 1.0, 10_000, 1_000_000, 500, 25)
QUICK = Plan(100, 50, 3, 1.0, 1_000, 20_000, 200, 5)
PENDING_SMALL = 1_000


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def summary_ms(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": round(pct(values, 50) * 1000, 2),
        "p95_ms": round(pct(values, 95) * 1000, 2),
        "p99_ms": round(pct(values, 99) * 1000, 2),
        "max_ms": round(max(values) * 1000, 2) if values else float("nan"),
    }


def with_db(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


class DueSink:
    """The benchmark's consumer of post.due: receive instant per post."""

    def __init__(self) -> None:
        self.received: dict[str, tuple[float, float]] = {}  # post id -> (received, due)
        self.duplicates = 0

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        t = time.time()
        body = json.loads(message.body)
        post_id = body["payload"]["post_id"]
        due = datetime.fromisoformat(body["payload"]["due_at"]).timestamp()
        if post_id in self.received:
            self.duplicates += 1
        else:
            self.received[post_id] = (t, due)

    async def wait(self, ids: set[str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ids <= self.received.keys():
                return True
            await asyncio.sleep(0.01)
        return ids <= self.received.keys()


class Service:
    """``codiv-scheduler`` as a subprocess."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = int(env["PORT"])

    async def start(self) -> None:
        exe = Path(sys.executable).parent / "codiv-scheduler"
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(  # noqa: ASYNC220 - returns at once
                [str(exe)], env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT
            )
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"scheduler exited: {self.log_path.read_text()[-2000:]}")
                try:
                    async with session.get(f"http://127.0.0.1:{self.port}/readyz") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError("scheduler not ready in 30 s")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        for _ in range(300):
            if self.proc.poll() is not None:
                return
            await asyncio.sleep(0.1)
        self.proc.kill()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@asynccontextmanager
async def environment(pg_url: str, amqp_url: str) -> AsyncIterator[dict[str, Any]]:
    """A dedicated database, exchange and probe queue; removed afterwards."""
    tag = uuid.uuid4().hex[:8]
    db_name = f"codiv_bench_scheduler_{tag}"
    admin = await asyncpg.connect(pg_url)
    await admin.execute(f'CREATE DATABASE "{db_name}"')
    await admin.close()
    dsn = with_db(pg_url, db_name)
    exchange, prefix = f"codiv.bench.{tag}", f"bench{tag}."
    connection = await aio_pika.connect_robust(amqp_url)
    consumer_tag: str | None = None
    try:
        assert SPEC.migrations is not None
        await migrate_dsn(dsn, SCHEMA, [SHARED_MIGRATIONS, SPEC.migrations])
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        topo = b.Topology(exchange=exchange, queue_prefix=prefix)
        ex = await b.declare_exchanges(channel, topo)
        # The scheduler's queue is declared by the service; declare the sink's here.
        sink_queue = await b.declare_queue(channel, topo, b.QueueSpec("bench", ["post.due"]))
        consume = await connection.channel()
        await consume.set_qos(prefetch_count=2000)
        sink = DueSink()
        q = await consume.get_queue(sink_queue.name)
        # Auto-ack keeps the probe light: it shares this process with the publisher.
        consumer_tag = await q.consume(sink.on_message, no_ack=True)
        yield {
            "dsn": dsn,
            "db_name": db_name,
            "exchange": exchange,
            "prefix": prefix,
            "publisher": b.EventPublisher(ex, confirm_timeout=10),
            "sink": sink,
            "amqp_url": amqp_url,
        }
    finally:
        try:
            if consumer_tag is not None:
                await q.cancel(consumer_tag)
            ch = await connection.channel()
            for name in ("scheduler", "bench"):
                for q_name in (f"{prefix}{name}", f"{prefix}{name}.dead"):
                    await ch.queue_delete(q_name)
            await ch.exchange_delete(exchange)
            await ch.exchange_delete(f"{exchange}.dlx")
        finally:
            await connection.close()
            admin = await asyncpg.connect(pg_url)
            await admin.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
            await admin.close()


async def bench_floor(plan: Plan) -> dict[str, Any]:
    overs: list[float] = []
    for _ in range(plan.floor_samples):
        deadline = time.time() + 0.01
        await asyncio.sleep(deadline - time.time())
        overs.append(time.time() - deadline)
    return summary_ms(overs)


async def bench_broker_floor(env: dict[str, Any], count: int) -> dict[str, Any]:
    """Bare aio-pika on this machine: publish ``count`` messages with confirms to a quorum
    queue (batches of 200 in flight, like the outbox relay), then consume them."""
    connection = await aio_pika.connect_robust(env["amqp_url"])
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        topo = b.Topology(exchange=env["exchange"], queue_prefix=env["prefix"])
        queue = await b.declare_queue(channel, topo, b.QueueSpec("floor", ["bench.floor"]))
        exchange = await channel.get_exchange(env["exchange"])
        body = b"x" * 700
        started = time.perf_counter()
        for i in range(0, count, 200):
            await asyncio.gather(
                *(
                    exchange.publish(
                        aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                        "bench.floor",
                        mandatory=True,
                        timeout=10,
                    )
                    for _ in range(min(200, count - i))
                )
            )
        published = time.perf_counter() - started
        got = 0
        done = asyncio.Event()

        async def on_message(_: AbstractIncomingMessage) -> None:
            nonlocal got
            got += 1
            if got == count:
                done.set()

        consume = await connection.channel()
        await consume.set_qos(prefetch_count=2000)
        q = await consume.get_queue(queue.name)
        started = time.perf_counter()
        tag = await q.consume(on_message, no_ack=True)
        await asyncio.wait_for(done.wait(), 120)
        consumed = time.perf_counter() - started
        await q.cancel(tag)
        await channel.queue_delete(queue.name)
        await channel.queue_delete(f"{queue.name}.dead")
    finally:
        await connection.close()
    return {
        "messages": count,
        "publish_confirmed_per_s": round(count / published),
        "consume_per_s": round(count / consumed),
    }


async def bench_steady(env: dict[str, Any], plan: Plan) -> dict[str, Any]:
    sink: DueSink = env["sink"]
    publisher: b.EventPublisher = env["publisher"]
    count = int(plan.steady_rate * plan.steady_seconds)
    interval = 1 / plan.steady_rate
    ids: set[str] = set()
    start = time.monotonic()
    for i in range(count):
        await asyncio.sleep(max(0.0, start + i * interval - time.monotonic()))
        post_id = uuid.uuid4()
        ids.add(str(post_id))
        due = datetime.now(UTC) + timedelta(seconds=plan.lead)
        await publisher.publish(
            PostRequestedEvent(
                workspace_id=WS,
                producer="bench",
                payload=PostRequested(
                    post_id=post_id, profile_name="bench", scheduled_at=due, content=CONTENT
                ),
            )
        )
    complete = await sink.wait(ids, timeout=plan.lead + 30)
    lags = [sink.received[i][0] - sink.received[i][1] for i in ids if i in sink.received]
    early = sum(1 for lag in lags if lag < 0)
    return {**summary_ms(lags), "missing": len(ids) - len(lags), "early": early,
            "complete": complete, "rate_per_s": plan.steady_rate}  # fmt: skip


async def insert_jobs(
    conn: asyncpg.Connection, count: int, first_due: datetime, spread_s: float
) -> None:
    """Pending jobs written straight into the table (as many as ``count``), due over
    ``spread_s`` seconds from ``first_due``."""
    await conn.execute(
        """INSERT INTO scheduler.jobs
             (post_id, workspace_id, state, due_at, attempt, content, changed_at)
           SELECT gen_random_uuid(), $1, 'pending',
                  $2::timestamptz + (i::float8 / $4 * $5) * interval '1 second',
                  1, $3::text::jsonb, now()
           FROM generate_series(0, $4 - 1) AS i""",
        WS,
        first_due,
        CONTENT.model_dump_json(),
        count,
        spread_s,
    )


async def bench_burst(env: dict[str, Any], plan: Plan) -> dict[str, Any]:
    sink: DueSink = env["sink"]
    conn = await asyncpg.connect(env["dsn"])
    try:
        second = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)
        await insert_jobs(conn, plan.burst, second, 0.999)
        ids = {
            str(r["post_id"])
            for r in await conn.fetch(
                "SELECT post_id FROM scheduler.jobs WHERE due_at >= $1 AND due_at < $2",
                second,
                second + timedelta(seconds=1),
            )
        }
        # What the consumer does for a new job: wake the release loops.
        await conn.execute("SELECT pg_notify('scheduler_jobs', $1)", str(second.timestamp()))
    finally:
        await conn.close()
    complete = await sink.wait(ids, timeout=60)
    conn = await asyncpg.connect(env["dsn"])
    try:
        db_lags = [
            r["lag"]
            for r in await conn.fetch(
                "SELECT extract(epoch FROM released_at - due_at)::float8 AS lag"
                " FROM scheduler.jobs WHERE post_id = ANY($1::uuid[])",
                list(ids),
            )
            if r["lag"] is not None
        ]
    finally:
        await conn.close()
    got = [sink.received[i] for i in ids if i in sink.received]
    lags = [t - due for t, due in got]
    last = max(t for t, _ in got) if got else float("nan")
    return {
        **summary_ms(lags),
        "jobs": plan.burst,
        "missing": len(ids) - len(got),
        "early": sum(1 for lag in lags if lag < 0),
        "complete": complete,
        "last_after_second_start_s": round(last - second.timestamp(), 3),
        "released_lag_ms": {k: v for k, v in summary_ms(db_lags).items() if k != "n"},
        "last_after_second_end_s": round(last - second.timestamp() - 1, 3),
    }


@dataclass
class BatchTarget:
    """One benchmark database with a known number of pending jobs, and a release loop on it."""

    name: str
    pool: asyncpg.Pool
    loop: ReleaseLoop
    claims: list[float]
    next_due: list[float]


def batch_target(name: str, dsn: str, pool: asyncpg.Pool, plan: Plan) -> BatchTarget:
    loop = ReleaseLoop(
        pool=lambda: pool,
        dsn=dsn,
        schema=SCHEMA,
        metrics=SchedulerMetrics(Metrics("bench")),
        settings=ReleaseSettings(batch_size=plan.batch, replica_id="bench"),
        wake_relay=lambda: None,
    )
    return BatchTarget(name, pool, loop, [], [])


async def measure_batch(target: BatchTarget, plan: Plan) -> None:
    """Make one batch due, time release_batch() (claim, mark, outbox, commit) and next-due."""
    async with target.pool.acquire() as conn:
        await insert_jobs(conn, plan.batch, datetime.now(UTC) - timedelta(seconds=1), 0.5)
        started = time.perf_counter()
        released = await target.loop.release_batch()
        target.claims.append(time.perf_counter() - started)
        assert len(released) == plan.batch, len(released)
        started = time.perf_counter()
        await conn.fetchrow(
            "SELECT (SELECT due_at FROM scheduler.jobs WHERE state = 'pending'"
            " ORDER BY due_at LIMIT 1), clock_timestamp()"
        )
        target.next_due.append(time.perf_counter() - started)
        await conn.execute("DELETE FROM scheduler.outbox")


async def batch_summary(target: BatchTarget, plan: Plan) -> dict[str, Any]:
    async with target.pool.acquire() as conn:
        pending = await conn.fetchval("SELECT count(*) FROM scheduler.jobs WHERE state='pending'")
    return {
        "pending": pending,
        "batch": plan.batch,
        "reps": len(target.claims),
        "release_batch_median_ms": round(statistics.median(target.claims) * 1000, 2),
        "release_batch_p90_ms": round(pct(target.claims, 90) * 1000, 2),
        "next_due_median_ms": round(statistics.median(target.next_due) * 1000, 3),
    }


async def fill_pending(dsn: str, total: int) -> float:
    started = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        have = await conn.fetchval("SELECT count(*) FROM scheduler.jobs WHERE state='pending'")
        chunk = 250_000
        far = datetime.now(UTC) + timedelta(days=1)
        while have < total:
            n = min(chunk, total - have)
            await insert_jobs(conn, n, far + timedelta(hours=have / 1000), 3600.0)
            have += n
        await conn.execute("VACUUM ANALYZE scheduler.jobs")
    finally:
        await conn.close()
    return time.perf_counter() - started


async def run(plan: Plan, quick: bool) -> dict[str, Any]:
    pg_url = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    amqp_url = os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    result: dict[str, Any] = {
        "mode": "quick" if quick else "full",
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "plan": asdict(plan),
        "started_at": datetime.now(UTC).isoformat(),
        "lag_measured_at": (
            "steady and burst 'received': the benchmark's consumer of post.due (receive instant"
            " - due_at); burst 'released': the claim's clock_timestamp() - due_at (the batch"
            " commits with its outbox rows right after, see release_batch times)"
        ),
    }
    log_dir = RESULTS / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    async with environment(pg_url, amqp_url) as env:
        service_env = {
            "DATABASE_URL": env["dsn"],
            "AMQP_URL": amqp_url,
            "AMQP_EXCHANGE": env["exchange"],
            "AMQP_QUEUE_PREFIX": env["prefix"],
            "PORT": str(free_port()),
            "LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
            "LOG_FORMAT": "json",
            "SCHEDULER_PENDING_SAMPLE_INTERVAL": "2",
            **{k: v for k, v in os.environ.items() if k.startswith(("SCHEDULER_", "OUTBOX_"))},
        }
        result["service_settings"] = {
            k: v for k, v in service_env.items() if k.startswith(("SCHEDULER", "OUTBOX"))
        }
        log_path = log_dir / f"scheduler-{result['mode']}.log"
        log_path.unlink(missing_ok=True)

        print(f"nproc={result['nproc']}  mode={result['mode']}", flush=True)
        result["floor"] = await bench_floor(plan)
        print(f"floor: {result['floor']}", flush=True)
        result["broker_floor"] = await bench_broker_floor(env, plan.burst)
        print(f"broker floor: {result['broker_floor']}", flush=True)

        service = Service(service_env, log_path)
        await service.start()
        try:
            result["rss_idle_mb"] = round(rss_mb(service.pid), 1)
            result["steady"] = await bench_steady(env, plan)
            print(f"steady: {result['steady']}", flush=True)
            result["burst"] = await bench_burst(env, plan)
            print(f"burst: {result['burst']}", flush=True)
        finally:
            await service.stop()

        # Batch release time with 1k pending (a second database) and with the large set (the
        # main one), measured alternately so that machine noise hits both alike. The
        # service is stopped meanwhile so that it does not compete for the due rows.
        small_db = f"{env['db_name']}_small"
        admin = await asyncpg.connect(pg_url)
        await admin.execute(f'CREATE DATABASE "{small_db}"')
        await admin.close()
        small_dsn = with_db(pg_url, small_db)
        try:
            assert SPEC.migrations is not None
            await migrate_dsn(small_dsn, SCHEMA, [SHARED_MIGRATIONS, SPEC.migrations])
            await fill_pending(small_dsn, PENDING_SMALL)
            result["fill_seconds"] = round(await fill_pending(env["dsn"], plan.pending_large), 1)
            admin = await asyncpg.connect(pg_url)
            await admin.execute("CHECKPOINT")
            await admin.close()
            small_pool = await create_pool(small_dsn, SCHEMA, max_size=2)
            large_pool = await create_pool(env["dsn"], SCHEMA, max_size=2)
            try:
                small = batch_target("small", small_dsn, small_pool, plan)
                large = batch_target("large", env["dsn"], large_pool, plan)
                for _ in range(2):  # warm-up, not counted
                    await measure_batch(small, plan)
                    await measure_batch(large, plan)
                for t in (small, large):
                    t.claims.clear()
                    t.next_due.clear()
                for _ in range(plan.batch_reps):
                    await measure_batch(small, plan)
                    await measure_batch(large, plan)
                result["batch_small"] = await batch_summary(small, plan)
                result["batch_large"] = await batch_summary(large, plan)
            finally:
                await small_pool.close()
                await large_pool.close()
        finally:
            admin = await asyncpg.connect(pg_url)
            await admin.execute(f'DROP DATABASE IF EXISTS "{small_db}" WITH (FORCE)')
            await admin.close()
        print(f"batch @small: {result['batch_small']}", flush=True)
        print(f"batch @large: {result['batch_large']}", flush=True)
        small_ms = result["batch_small"]["release_batch_median_ms"]
        large_ms = result["batch_large"]["release_batch_median_ms"]
        result["batch_ratio"] = round(large_ms / small_ms, 2)

        # RSS of a scheduler running with the large pending set that releases a batch.
        service = Service(service_env, log_path)
        await service.start()
        try:
            conn = await asyncpg.connect(env["dsn"])
            try:
                await insert_jobs(conn, plan.batch, datetime.now(UTC), 0.1)
                await conn.execute(
                    "SELECT pg_notify('scheduler_jobs', $1)", str(datetime.now(UTC).timestamp())
                )
                deadline = time.monotonic() + 30
                overdue = (
                    "SELECT count(*) FROM scheduler.jobs"
                    " WHERE state = 'pending' AND due_at <= now()"
                )
                while await conn.fetchval(overdue):
                    if time.monotonic() > deadline:
                        raise RuntimeError("the batch was not released with the large pending set")
                    await asyncio.sleep(0.05)
            finally:
                await conn.close()
            await asyncio.sleep(2.5)  # let the pending sampler count the large set
            result["rss_large_pending_mb"] = round(rss_mb(service.pid), 1)
            result["pending_at_rss"] = plan.pending_large
        finally:
            await service.stop()
        result["duplicates_received"] = env["sink"].duplicates
    return result


def verdicts(r: dict[str, Any], plan: Plan) -> list[tuple[str, str, str, str]]:
    s, bu = r["steady"], r["burst"]
    ok = "yes" if s["p50_ms"] < 50 and s["p99_ms"] < 250 and s["missing"] == 0 else "NO"
    burst_ok = "yes" if bu["missing"] == 0 and bu["max_ms"] <= 2000 else "NO"
    rel, bf = bu["released_lag_ms"], r["broker_floor"]
    released_ok = "yes" if bu["missing"] == 0 and rel["max_ms"] <= 2000 else "NO"
    large = f"{plan.pending_large:,}"
    rows = [
        ("sleep-until-deadline floor (this process)",
         f"p50 {r['floor']['p50_ms']} ms, p99 {r['floor']['p99_ms']} ms, "
         f"max {r['floor']['max_ms']} ms", "-", "-"),
        (f"steady {s['rate_per_s']:.0f}/s, lag due->post.due received (n={s['n']})",
         f"p50 {s['p50_ms']} ms, p95 {s['p95_ms']} ms, p99 {s['p99_ms']} ms, max {s['max_ms']} ms",
         "p50<50 ms, p99<250 ms", ok),
        (f"{bu['jobs']:,} due in one second: released (claimed, outbox committed)",
         f"lag p50 {rel['p50_ms']} ms, p99 {rel['p99_ms']} ms, max {rel['max_ms']} ms",
         "all within 2 s", released_ok),
        (f"{bu['jobs']:,} due in one second: post.due received by the consumer",
         f"lag p50 {bu['p50_ms']} ms, p99 {bu['p99_ms']} ms, max {bu['max_ms']} ms; last "
         f"{bu['last_after_second_end_s']} s after the second ended",
         "all within 2 s", burst_ok),
        (f"broker floor: bare aio-pika, {bf['messages']:,} messages",
         f"publish+confirm {bf['publish_confirmed_per_s']}/s, consume {bf['consume_per_s']}/s "
         f"(= {bf['messages'] / bf['publish_confirmed_per_s']:.1f} s to publish the burst)",
         "-", "-"),
        (f"release_batch({plan.batch}) median at {PENDING_SMALL:,} / {large} pending",
         f"{r['batch_small']['release_batch_median_ms']} ms / "
         f"{r['batch_large']['release_batch_median_ms']} ms (ratio {r['batch_ratio']})",
         "ratio < 1.5", "yes" if r["batch_ratio"] < 1.5 else "NO"),
        ("next-due query median at small / large",
         f"{r['batch_small']['next_due_median_ms']} ms / "
         f"{r['batch_large']['next_due_median_ms']} ms", "-", "-"),
        (f"scheduler RSS idle / with {large} pending",
         f"{r['rss_idle_mb']} MB / {r['rss_large_pending_mb']} MB", "< 150 MB",
         "yes" if r["rss_large_pending_mb"] < 150 else "NO"),
    ]  # fmt: skip
    return rows


def print_table(r: dict[str, Any], plan: Plan) -> None:
    rows = verdicts(r, plan)
    head = ("measure", "figure", "target", "met")
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(4)]
    print(f"\nscheduler benchmark ({r['mode']}), nproc={r['nproc']}, python {r['python']}")
    print(f"lag measured at: {r['lag_measured_at']}")
    line = "-+-".join("-" * w for w in widths)
    print(" | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
    print(line)
    for row in rows:
        print(" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    if r["mode"] == "quick":
        print("(quick smoke run: small numbers, the targets apply to the full run)")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scheduler")
    parser.add_argument("--quick", action="store_true", help="smoke run, under 30 s")
    parser.add_argument("--out", type=Path, default=None, help="JSON result path")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    configure_logging("WARNING", "console", service="bench")
    result = asyncio.run(run(plan, args.quick))
    print_table(result, plan)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = args.out or RESULTS / f"scheduler-{result['mode']}.json"
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"results: {out}")
    complete = (
        result["steady"]["missing"] == 0
        and result["burst"]["missing"] == 0
        and result["steady"]["early"] == 0
        and result["burst"]["early"] == 0
    )
    if not complete:
        print("ERROR: some jobs were not released, or released early")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
