"""Metric collection: pin and account analytics on the plan, paced per account, via the outbox."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

import aiohttp
from codiv_common.broker import Handler
from codiv_common.events import (
    AccountConnectedEvent,
    AccountDisconnectedEvent,
    AccountMetrics,
    AccountMetricsEvent,
    Event,
    MetricPoint,
    PinMetrics,
    PinMetricsEvent,
)
from codiv_common.logging import bind_context, get_logger
from codiv_common.runtime import Runtime
from codiv_pinterest import errors as pe
from codiv_pinterest.client import PinterestClient
from codiv_pinterest.models import DailyMetrics
from prometheus_client import CollectorRegistry, Counter, Histogram

from . import metrics_plan as plan
from .adapters.auth import (
    AuthTokenClient,
    AuthUnavailable,
    NeedsReauth,
    TokenError,
    UnknownAccount,
)
from .adapters.metric_plan_repo import AccountRow, MetricPlanRepository, PlanRow
from .domain import write_interval
from .settings import Settings

log = get_logger(__name__)

T = TypeVar("T")
PRODUCER = "publisher"
ACCOUNT_EVENTS = ("account.connected", "account.disconnected")


# ---------------------------------------------------------------- clock


class Clock(Protocol):
    async def now(self) -> dt.datetime: ...


class SystemClock:
    """The real UTC time."""

    async def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)


class UrlClock:
    """Tests only (``ANALYTICS_CLOCK_URL``): "now" is what a clock endpoint answers, e.g.
    the emulator's ``GET /_emulator/clock`` -> ``{"now": "2026-01-01T00:00:00Z"}``, so
    advancing the emulator's clock moves the plan along."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self._session = session
        self._url = url

    async def now(self) -> dt.datetime:
        async with self._session.get(self._url, timeout=aiohttp.ClientTimeout(total=5)) as resp:
            resp.raise_for_status()
            body = await resp.json()
        value = dt.datetime.fromisoformat(str(body["now"]).replace("Z", "+00:00"))
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


class TokenSource(Protocol):
    async def get(self, account_id: str) -> str: ...

    async def invalidate(self, account_id: str, rejected_token: str) -> str: ...


# ---------------------------------------------------------------- metrics


class CollectorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.collections = Counter(
            "codiv_publisher_analytics_collections_total",
            "Analytics collections by kind (pin, account) and outcome",
            ["kind", "outcome"],
            registry=registry,
        )
        self.pacing_wait = Histogram(
            "codiv_publisher_analytics_pacing_wait_seconds",
            "Wait for an account's analytics slot",
            buckets=(0, 0.5, 1, 2, 5, 10, 30, 60, 120),
            registry=registry,
        )


# ---------------------------------------------------------------- collector


class _Round:
    """The clock of one collection round: the clock's answer plus the time spent since."""

    def __init__(self, now: dt.datetime) -> None:
        self.started = now
        self._t0 = asyncio.get_running_loop().time()

    def now(self) -> dt.datetime:
        return self.started + dt.timedelta(seconds=asyncio.get_running_loop().time() - self._t0)


class MetricsCollector:
    """Collects due pins and accounts; any number of replicas may run it.

    A round leases due rows (``FOR UPDATE SKIP LOCKED`` + ``lease_until``), takes each
    one a slot of its account's analytics bucket (shared in Postgres by every replica),
    calls Pinterest at that slot, then advances the row and writes ``pin.metrics`` /
    ``account.metrics`` to the outbox in one transaction. Rows whose slot lies beyond
    ``ANALYTICS_MAX_WAIT`` go back unleased for a later round.
    """

    def __init__(
        self,
        *,
        repo: MetricPlanRepository,
        tokens: TokenSource,
        pinterest: PinterestClient,
        clock: Clock,
        settings: Settings,
        metrics: CollectorMetrics,
    ) -> None:
        self.repo = repo
        self.tokens = tokens
        self.pinterest = pinterest
        self.clock = clock
        self.settings = settings
        self.metrics = metrics
        self._paused_until: dict[str, float] = {}

    async def run(self) -> None:
        """The loop: a round whenever something is due, else a short sleep."""
        while True:
            try:
                busy = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("analytics_round_failed", error=f"{type(exc).__name__}: {exc}")
                busy = False
            if not busy:
                await asyncio.sleep(self.settings.analytics_poll_interval)

    async def run_once(self) -> bool:
        """One round; False when nothing was due."""
        s = self.settings
        rnd = _Round(await self.clock.now())
        lease = s.analytics_lease
        accounts = await self.repo.claim_accounts(rnd.started, s.analytics_batch_size, lease)
        pins = await self.repo.claim_pins(rnd.started, s.analytics_batch_size, lease)
        if not pins and not accounts:
            return False
        interval = write_interval(s.analytics_calls_per_minute)
        jobs: list[Awaitable[None]] = []
        full: set[str] = set()
        skipped_accounts: list[str] = []
        skipped_pins: list[PlanRow] = []
        # Account rows first: one call a day each, they never wait behind a pin backlog.
        for account in accounts:
            if account.account_id in full:
                skipped_accounts.append(account.account_id)
                continue
            wait = await self._slot(account.account_id, interval, full)
            jobs.append(self._at(wait, self._account_job(account, rnd)))
        for row in pins:
            if row.account_id in full:
                skipped_pins.append(row)
                continue
            wait = await self._slot(row.account_id, interval, full)
            jobs.append(self._at(wait, self._pin_job(row, rnd)))
        await self.repo.release_accounts(skipped_accounts)
        await self.repo.release_pins([r.post_id for r in skipped_pins])
        await asyncio.gather(*jobs)
        return True

    async def _slot(self, account_id: str, interval: float, full: set[str]) -> float:
        _, wait = await self.repo.reserve_slot(account_id, interval)
        if wait > self.settings.analytics_max_wait:
            full.add(account_id)  # later rows of this account wait for another round
        self.metrics.pacing_wait.observe(max(0.0, wait))
        return wait

    async def _at(self, wait: float, job: Callable[[], Awaitable[bool]]) -> None:
        if wait > 0:
            await asyncio.sleep(wait)
        try:
            await job()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the lease runs out and another round takes the row
            log.warning("analytics_job_failed", error=f"{type(exc).__name__}: {exc}")

    def _paused(self, account_id: str) -> bool:
        """A 429 in this round paused the account: its remaining rows wait for a later one."""
        return self._paused_until.get(account_id, 0.0) > asyncio.get_running_loop().time()

    # ------------------------------------------------------------ pins

    def _pin_job(self, row: PlanRow, rnd: _Round) -> Callable[[], Awaitable[bool]]:
        async def job() -> bool:
            bind_context(post_id=str(row.post_id), pin_id=row.pin_id)
            if self._paused(row.account_id):
                await self.repo.release_pins([row.post_id])
                return False
            return await self._collect_pin(row, rnd)

        return job

    async def _collect_pin(self, row: PlanRow, rnd: _Round) -> bool:
        now = rnd.now()
        today = now.date()
        span = plan.collection_range(row.published_at.date(), row.final_through, today)
        if span is None:
            await self.repo.pin_collected(
                row.post_id,
                next_at=None,
                final_through=row.final_through,
                collected_at=now,
                event=None,
            )
            self.metrics.collections.labels("pin", "window_over").inc()
            return True
        types = plan.metric_types(row.post_type)
        try:
            result = await self._call(
                row.account_id,
                lambda token: self.pinterest.get_pin_analytics(
                    token, row.pin_id, span.start, span.end, types, today=today
                ),
            )
        except (TokenError, pe.PinterestError) as exc:
            await self._pin_error(row, exc, now)
            return False
        now = rnd.now()
        points = _points(result.daily)
        event = (
            PinMetricsEvent(
                workspace_id=row.workspace_id,
                correlation_id=row.post_id,
                producer=PRODUCER,
                payload=PinMetrics(
                    post_id=row.post_id,
                    pin_id=row.pin_id,
                    account_id=row.account_id,
                    collected_at=now,
                    daily=points,
                ),
            )
            if points
            else None
        )
        await self.repo.pin_collected(
            row.post_id,
            next_at=plan.next_collection(row.published_at, now),
            final_through=plan.settled_through(
                ((d.date, d.data_status) for d in result.daily), row.final_through
            ),
            collected_at=now,
            event=event,
        )
        self.metrics.collections.labels("pin", "ok").inc()
        return True

    async def _pin_error(self, row: PlanRow, exc: Exception, now: dt.datetime) -> None:
        outcome, delay, stop = await self._verdict(row.account_id, exc, row.failures + 1)
        self.metrics.collections.labels("pin", outcome).inc()
        log.info("pin_analytics_not_collected", outcome=outcome, error=str(exc)[:300])
        end = row.published_at + dt.timedelta(days=plan.WINDOW_DAYS)
        next_at = None if stop or now >= end else now + dt.timedelta(seconds=delay)
        await self.repo.pin_failed(
            row.post_id, f"{outcome}: {exc}", next_at, count=outcome != "rate_limited"
        )

    # ------------------------------------------------------------ accounts

    def _account_job(self, row: AccountRow, rnd: _Round) -> Callable[[], Awaitable[bool]]:
        async def job() -> bool:
            bind_context(account_id=row.account_id)
            if self._paused(row.account_id):
                await self.repo.release_accounts([row.account_id])
                return False
            return await self._collect_account(row, rnd)

        return job

    async def _collect_account(self, row: AccountRow, rnd: _Round) -> bool:
        now = rnd.now()
        today = now.date()
        span = plan.collection_range(None, row.final_through, today)
        assert span is not None  # without a publication day the window always has today
        try:
            result = await self._call(
                row.account_id,
                lambda token: self.pinterest.get_account_analytics(
                    token, span.start, span.end, plan.ACCOUNT_METRICS, today=today
                ),
            )
        except (TokenError, pe.PinterestError) as exc:
            outcome, delay, stop = await self._verdict(row.account_id, exc, row.failures + 1)
            self.metrics.collections.labels("account", outcome).inc()
            log.info("account_analytics_not_collected", outcome=outcome, error=str(exc)[:300])
            await self.repo.account_failed(
                row.account_id,
                f"{outcome}: {exc}",
                now + dt.timedelta(seconds=delay),
                stop=stop,
            )
            return False
        now = rnd.now()
        points = _points(result.daily)
        event = (
            AccountMetricsEvent(
                workspace_id=row.workspace_id,
                producer=PRODUCER,
                payload=AccountMetrics(
                    account_id=row.account_id,
                    profile_id=row.profile_id,
                    collected_at=now,
                    daily=points,
                ),
            )
            if points
            else None
        )
        await self.repo.account_collected(
            row.account_id,
            next_at=now + plan.ACCOUNT_INTERVAL,
            final_through=plan.settled_through(
                ((d.date, d.data_status) for d in result.daily), row.final_through
            ),
            collected_at=now,
            event=event,
        )
        self.metrics.collections.labels("account", "ok").inc()
        return True

    # ------------------------------------------------------------ shared

    async def _call(self, account_id: str, fn: Callable[[str], Awaitable[T]]) -> T:
        """A Pinterest call; on a 401, have auth replace the token and try once more."""
        token = await self.tokens.get(account_id)
        try:
            return await fn(token)
        except pe.Unauthorized as err:
            if err.missing_scope:
                raise
            token = await self.tokens.invalidate(account_id, token)
            return await fn(token)

    async def _verdict(
        self, account_id: str, exc: Exception, failures: int
    ) -> tuple[str, float, bool]:
        """(outcome, seconds until the next try, stop for good)."""
        s = self.settings
        if isinstance(exc, pe.RateLimited):
            pause = exc.retry_after or s.rate_limit_backoff
            self._paused_until[account_id] = asyncio.get_running_loop().time() + pause
            await self.repo.pause(account_id, pause)
            return "rate_limited", pause, False
        if isinstance(exc, UnknownAccount):
            return "account_not_connected", 0.0, True
        if isinstance(exc, pe.NotFound):
            return "pin_not_found", 0.0, True
        if isinstance(exc, NeedsReauth):
            return "needs_reauth", max(plan.failure_delay(failures), 3600.0), False
        if isinstance(exc, AuthUnavailable):
            return "auth_unavailable", plan.failure_delay(failures), False
        return "error", plan.failure_delay(failures), False


def _points(daily: tuple[DailyMetrics, ...]) -> list[MetricPoint]:
    return [
        MetricPoint(date=d.date.isoformat(), data_status=d.data_status, metrics=dict(d.metrics))
        for d in daily
        if plan.reportable(d.data_status)
    ]


# ---------------------------------------------------------------- accounts consumer


class AnalyticsAccounts:
    """Queue `publisher`, routing keys `account.connected`, `account.disconnected`.

    Keeps the list of accounts whose daily analytics are collected. Idempotent and
    out-of-order safe without an inbox: each row remembers when the event that set it
    happened, and an older event changes nothing. Acked once the row is written.
    """

    def __init__(self, repo: MetricPlanRepository) -> None:
        self.repo = repo

    async def handle(self, event: Event) -> None:
        if isinstance(event, AccountConnectedEvent):
            p = event.payload
            await self.repo.account_connected(
                p.account_id, event.workspace_id, p.profile_id, event.occurred_at
            )
        elif isinstance(event, AccountDisconnectedEvent):
            gone = event.payload
            await self.repo.account_disconnected(
                gone.account_id, event.workspace_id, gone.profile_id, event.occurred_at
            )

    def wrap(self, handler: Handler) -> Handler:
        """The queue's handler: account events here, everything else to ``handler``."""

        async def handle(event: Event) -> None:
            if event.type in ACCOUNT_EVENTS:
                await self.handle(event)
            else:
                await handler(event)

        return handle


# ---------------------------------------------------------------- wiring


class AnalyticsWiring:
    """What app.py needs: the account consumer now, the collector once sessions exist."""

    def __init__(self, settings: Settings, schema: str, runtime: Runtime) -> None:
        self.settings = settings
        self.runtime = runtime
        self.repo = MetricPlanRepository(lambda: runtime.pool, schema)
        self.accounts = AnalyticsAccounts(self.repo)
        self.metrics = CollectorMetrics(runtime.metrics.registry)
        self.collector: MetricsCollector | None = None
        runtime.on_ready(self._start)

    def bind(self, session: aiohttp.ClientSession) -> None:
        """Build the collector once the HTTP session exists (at application start-up)."""
        s = self.settings
        url = s.analytics_clock_url
        if url == "emulator":
            url = s.pinterest_api_url.rstrip("/").removesuffix("/v5") + "/_emulator/clock"
        clock: Clock = UrlClock(session, url) if url else SystemClock()
        self.collector = MetricsCollector(
            repo=self.repo,
            tokens=AuthTokenClient(
                session,
                s.auth_url,
                s.internal_service_token,
                margin=s.token_expiry_margin,
                timeout=s.auth_timeout,
            ),
            pinterest=PinterestClient(session, s.pinterest_api_url, timeout=s.pinterest_timeout),
            clock=clock,
            settings=self.settings,
            metrics=self.metrics,
        )

    async def _start(self, runtime: Runtime) -> None:
        if self.settings.analytics_enabled and self.collector is not None:
            runtime.spawn(self.collector.run(), "metrics-collector")
