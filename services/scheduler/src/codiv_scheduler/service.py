"""Use cases: apply consumed commands to jobs, and release due jobs through the outbox."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
from codiv_common.db import Conn
from codiv_common.events import (
    Event,
    PostCancelledEvent,
    PostChangeRejected,
    PostChangeRejectedEvent,
    PostContent,
    PostDueEvent,
    PostRequestedEvent,
    PostRescheduledEvent,
    PostRetryEvent,
    caused_by,
)
from codiv_common.inbox import process_once
from codiv_common.logging import get_logger
from codiv_common.outbox import enqueue

from .adapters.postgres import JobRepository, ReleasedJob
from .adapters.wakeup import WakeUp
from .domain import Change, ChangeKind, Decision, JobState, decide, due_event_id, due_payload
from .metrics import SchedulerMetrics

log = get_logger(__name__)

CONSUMER_NAME = "scheduler"
PoolProvider = Callable[[], asyncpg.Pool]


def utc_now() -> datetime:
    return datetime.now(UTC)


def change_from_event(event: Event) -> Change | None:
    """The scheduling command carried by ``event``; None for a type the scheduler ignores."""
    if isinstance(event, PostRequestedEvent):
        p = event.payload
        return _change(event, "request", p.post_id, scheduled_at=p.scheduled_at, content=p.content)
    if isinstance(event, PostRescheduledEvent):
        r = event.payload
        return _change(
            event,
            "reschedule",
            r.post_id,
            scheduled_at=r.scheduled_at,
            content=r.content,
            revision=r.revision,
        )
    if isinstance(event, PostCancelledEvent):
        return _change(event, "cancel", event.payload.post_id)
    if isinstance(event, PostRetryEvent):
        t = event.payload
        return _change(
            event, "retry", t.post_id, scheduled_at=t.retry_at, content=t.content, attempt=t.attempt
        )
    return None


def _change(
    event: Event,
    kind: ChangeKind,
    post_id: uuid.UUID,
    *,
    scheduled_at: datetime | None = None,
    content: PostContent | None = None,
    revision: int = 0,
    attempt: int = 1,
) -> Change:
    return Change(
        kind=kind,
        post_id=post_id,
        workspace_id=event.workspace_id,
        event_id=event.event_id,
        occurred_at=event.occurred_at,
        correlation_id=event.correlation_id or event.event_id,
        scheduled_at=scheduled_at,
        content=content,
        revision=revision,
        attempt=attempt,
    )


class SchedulerService:
    """Applies post.requested/rescheduled/cancelled/retry to the jobs table, once per event."""

    def __init__(
        self,
        pool: PoolProvider,
        schema: str,
        metrics: SchedulerMetrics,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._pool = pool
        self._schema = schema
        self._repo = JobRepository(schema)
        self._metrics = metrics
        self._clock = clock

    async def apply(self, event: Event) -> Decision | None:
        """Apply one event in one transaction with its inbox row; None for a duplicate."""
        change = change_from_event(event)
        if change is None:
            log.info("scheduler_event_ignored", type=event.type)
            return None

        async def work(conn: Conn) -> Decision:
            return await self._apply(conn, event, change)

        ran, decision = await process_once(
            self._pool(), self._schema, CONSUMER_NAME, event.event_id, work
        )
        if not ran or decision is None:
            self._metrics.changes.labels(event.type, "duplicate").inc()
            log.info("scheduler_change", type=event.type, outcome="duplicate")
            return None
        self._metrics.changes.labels(event.type, decision.outcome).inc()
        job = decision.job
        log.info(
            "scheduler_change",
            type=event.type,
            outcome=decision.outcome,
            state=job.state.value if job else None,
            due_at=job.due_at.isoformat() if job and job.due_at else None,
        )
        return decision

    async def _apply(self, conn: Conn, event: Event, change: Change) -> Decision:
        # Lock-then-decide; a lost insert race (two events of a new post at once) reads again.
        for _ in range(3):
            job = await self._repo.lock(conn, change.post_id)
            decision = decide(job, change, self._clock())
            new = decision.job
            if new is not None:
                if job is None:
                    if not await self._repo.insert(conn, new):
                        continue
                else:
                    await self._repo.update(conn, new)
                if new.state == JobState.PENDING and new.due_at is not None:
                    await self._repo.notify_pending(conn, new.due_at)
            if decision.rejection is not None:
                rejected = PostChangeRejectedEvent(
                    **caused_by(event),
                    producer="scheduler",
                    payload=PostChangeRejected(
                        post_id=change.post_id,
                        change=decision.rejection.change,
                        reason=decision.rejection.reason,
                    ),
                )
                await enqueue(conn, self._schema, rejected)
            return decision
        raise RuntimeError(f"could not lock job {change.post_id}")


@dataclass(frozen=True)
class ReleaseSettings:
    batch_size: int = 500
    max_sleep: float = 30.0
    contention_backoff_max: float = 0.5
    replica_id: str = "scheduler"
    fault_hold_batch: float = 0.0


class ReleaseLoop:
    """Releases due jobs: sleeps until the earliest due time or a wake-up, then claims.

    Each pass claims up to ``batch_size`` due jobs with ``FOR UPDATE SKIP LOCKED``,
    marks them released and writes their post.due events to the outbox in the same
    transaction, then wakes the outbox relay. The sleep is exactly until the next due
    time (computed against the database clock); a NOTIFY for an earlier job cuts it
    short. ``max_sleep`` is only a safety net (e.g. a lost notification), never what
    decides the lag. Due jobs that another transaction holds (a replica in the middle
    of a batch, or one that died and whose connection Postgres has not dropped yet)
    are retried with a short exponential backoff until they are free.
    """

    def __init__(
        self,
        *,
        pool: PoolProvider,
        dsn: str,
        schema: str,
        metrics: SchedulerMetrics,
        settings: ReleaseSettings,
        wake_relay: Callable[[], None],
    ) -> None:
        self._pool = pool
        self._schema = schema
        self._repo = JobRepository(schema)
        self._metrics = metrics
        self._settings = settings
        self._wake_relay = wake_relay
        self._wakeup = WakeUp(dsn)
        self._stopped = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._backoff_min = 0.005
        self._backoff = self._backoff_min

    async def release_batch(self) -> list[ReleasedJob]:
        """Claim and release one batch of due jobs (committed on return)."""
        s = self._settings
        async with self._pool().acquire() as conn, conn.transaction():
            jobs = await self._repo.claim_due(conn, s.batch_size, s.replica_id)
            if not jobs:
                return []
            claimed = time.perf_counter()
            await enqueue(conn, self._schema, *(self._due_event(j) for j in jobs))
            if s.fault_hold_batch:
                log.warning("release_batch_held", count=len(jobs), seconds=s.fault_hold_batch)
                await asyncio.sleep(s.fault_hold_batch)
        committed = time.perf_counter()
        self._wake_relay()
        extra = committed - claimed
        lags = [(j.released_at - j.due_at).total_seconds() + extra for j in jobs]
        for lag in lags:
            self._metrics.lag.observe(lag)
        self._metrics.released.inc(len(jobs))
        self._metrics.batch.observe(len(jobs))
        log.info(
            "release_batch",
            count=len(jobs),
            lag_max_ms=round(max(lags) * 1000, 1),
            first_due=jobs[0].due_at.isoformat(),
        )
        return jobs

    @staticmethod
    def _due_event(job: ReleasedJob) -> PostDueEvent:
        return PostDueEvent(
            event_id=due_event_id(job.post_id, job.attempt),
            workspace_id=job.workspace_id,
            correlation_id=job.correlation_id,
            causation_id=job.causation_id,
            producer="scheduler",
            payload=due_payload(
                job.post_id, job.attempt, job.due_at, PostContent.model_validate(job.content)
            ),
        )

    async def _pass(self) -> float:
        """Release what is due; return how long to sleep (0 = go again at once)."""
        wake = self._wakeup
        wake.horizon = math.inf  # during the pass every notification counts
        wake.event.clear()
        released = await self.release_batch()
        if len(released) == self._settings.batch_size:
            return 0.0
        async with self._pool().acquire() as conn:
            due, now = await self._repo.next_due(conn)
        if due is None:
            self._backoff = self._backoff_min
            timeout = self._settings.max_sleep
        elif due > now:
            self._backoff = self._backoff_min
            wake.horizon = due.timestamp()
            timeout = min((due - now).total_seconds(), self._settings.max_sleep)
        elif released:
            return 0.0
        else:
            # Due but held by another transaction: wait for it to commit or die.
            wake.horizon = due.timestamp()
            timeout = self._backoff
            self._backoff = min(self._backoff * 2, self._settings.contention_backoff_max)
        if not wake.connected:
            timeout = min(timeout, 1.0)
        return timeout

    async def run(self) -> None:
        """Release until :meth:`stop`; survives database outages."""
        error_delay = 0.2
        log.info("release_loop_started", replica=self._settings.replica_id)
        try:
            while not self._stopped:
                self._idle.clear()
                try:
                    await self._wakeup.ensure()
                    timeout = await self._pass()
                    error_delay = 0.2
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("release_loop_error", error=str(exc), retry_in=error_delay)
                    timeout = error_delay
                    error_delay = min(error_delay * 2, 5.0)
                finally:
                    self._idle.set()
                if timeout > 0 and not self._stopped:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(timeout):
                            await self._wakeup.event.wait()
        finally:
            await self._wakeup.close()

    async def stop(self) -> None:
        """Finish the batch in progress, then stop."""
        self._stopped = True
        self._wakeup.event.set()
        await self._idle.wait()


class PendingSampler:
    """Samples the number of pending jobs into the gauge every ``interval`` seconds, and
    once an hour purges finished jobs older than ``retention_days``.

    A retry for a purged job re-creates it (retries carry their content); a request that
    arrives after its cancel's tombstone was purged would be scheduled, so the retention
    must exceed any delivery delay (default 14 days, twice the inbox's).
    """

    def __init__(
        self,
        pool: PoolProvider,
        schema: str,
        metrics: SchedulerMetrics,
        interval: float,
        retention_days: float = 14.0,
    ):
        self._pool = pool
        self._repo = JobRepository(schema)
        self._metrics = metrics
        self._interval = interval
        self._retention_days = retention_days

    async def purge(self) -> int:
        """Purge finished jobs past retention, in batches; return how many went."""
        total = 0
        while True:
            async with self._pool().acquire() as conn:
                gone = await self._repo.purge_finished(conn, self._retention_days)
            total += gone
            if gone < 10000:
                return total

    async def run(self) -> None:
        last_purge = -math.inf
        loop = asyncio.get_running_loop()
        while True:
            try:
                async with self._pool().acquire() as conn:
                    self._metrics.pending.set(await self._repo.count_pending(conn))
                if loop.time() - last_purge >= 3600:
                    last_purge = loop.time()
                    purged = await self.purge()
                    if purged:
                        log.info("finished_jobs_purged", rows=purged)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("pending_sample_failed", error=str(exc))
            await asyncio.sleep(self._interval)
