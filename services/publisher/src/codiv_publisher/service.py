"""Use case: turn a post.due into exactly one pin, or a clear failure, or a scheduled retry."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

import asyncpg
from codiv_common import outbox
from codiv_common.broker import TRANSIENT_INFRA_ERRORS
from codiv_common.events import (
    PostDueEvent,
    PostError,
    PostFailed,
    PostFailedEvent,
    PostPublished,
    PostPublishedEvent,
    PostPublishing,
    PostPublishingEvent,
    PostRetry,
    PostRetryEvent,
    caused_by,
)
from codiv_common.logging import bind_context, get_logger
from codiv_pinterest import errors as pe
from codiv_pinterest.client import PinterestClient
from codiv_pinterest.models import Pin, PinCreate

from . import domain
from .adapters.auth import (
    AuthUnavailable,
    NeedsReauth,
    TokenError,
    TokenStillRefused,
    UnknownAccount,
)
from .adapters.media import MediaFetchError, VideoDownloader
from .adapters.repository import (
    FINAL_STATES,
    PinAlreadyClaimed,
    Publication,
    PublicationRepository,
    locked_publication,
)
from .domain import Action, InvalidContent, PinKind
from .metrics import PublisherMetrics
from .pauses import RECONNECT_MARGIN, pause_post
from .settings import Settings

log = get_logger(__name__)

T = TypeVar("T")

PRODUCER = "publisher"
LOCK_WAIT = 2.0
# Reconciliation reads the board newest first; once this many pins older than the
# window were seen, the rest is older still.
_RECONCILE_OLDER_LIMIT = 25


class TokenSource(Protocol):
    async def get(self, account_id: str) -> str: ...

    async def invalidate(self, account_id: str, rejected_token: str) -> str: ...


class _Done(Exception):
    """The run recorded its outcome (published, failed, or a post.retry)."""


@dataclass
class _Step:
    outcome: str = "ok"
    detail: str | None = None


class PublishService:
    """Publishes posts; safe under redelivery, crashes and several replicas.

    The post's row in ``publications`` is the idempotency record, not the inbox: a
    redelivered post.due must be able to run again (and reconcile), while a post that
    is already published or failed is never touched again.
    """

    def __init__(
        self,
        *,
        pool: Callable[[], asyncpg.Pool],
        schema: str,
        tokens: TokenSource,
        pinterest: PinterestClient,
        downloader: VideoDownloader,
        settings: Settings,
        metrics: PublisherMetrics,
        rng: random.Random | None = None,
    ) -> None:
        self.pool = pool
        self.schema = schema
        self.tokens = tokens
        self.pinterest = pinterest
        self.downloader = downloader
        self.settings = settings
        self.metrics = metrics
        self.rng = rng or random.Random()

    async def handle_due(self, event: PostDueEvent) -> None:
        """Run one post.due: returns when the outcome is committed (then the message is acked)."""
        post_id = event.payload.post_id
        async with locked_publication(self.pool(), self.schema, post_id, wait=LOCK_WAIT) as repo:
            if repo is None:
                # Another worker holds the post right now. It usually owns the outcome, but
                # its message may be this very one (redelivered after its broker connection
                # dropped): if that worker then died, nothing would bring the post back. So
                # ask to look again later; by then it is final (a no-op) or resumable.
                await self._defer_busy(event)
                log.info("post_due_deferred", reason="post is being handled elsewhere")
                return
            run = _Run(self, repo, event)
            await run.execute()
            log.info("post_due_handled", outcome=run.outcome, attempt=event.payload.attempt)

    async def _defer_busy(self, event: PostDueEvent) -> None:
        retry_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self.settings.busy_recheck_delay)
        retry = PostRetryEvent(
            **caused_by(event),
            producer=PRODUCER,
            payload=PostRetry(
                post_id=event.payload.post_id,
                attempt=event.payload.attempt + 1,
                retry_at=retry_at,
                reason="Another worker was handling this post; checking on it again.",
                content=event.payload.content,
            ),
        )
        async with self.pool().acquire() as conn, conn.transaction():
            await outbox.enqueue(conn, self.schema, retry)


class _Run:
    """One execution of one post.due message."""

    def __init__(self, svc: PublishService, repo: PublicationRepository, event: PostDueEvent):
        self.svc = svc
        self.repo = repo
        self.event = event
        self.p = event.payload
        self.content = event.payload.content
        self.account = event.payload.content.pinterest_account_id or ""
        self.token = ""
        self.reauthed = False
        self.creating = False
        self.create_started_at: dt.datetime | None = None
        self.last_create_at: dt.datetime | None = None
        self.reserved_slot: dt.datetime | None = None
        self.failures = 0
        self.rate_limited = 0
        self.kind: PinKind | None = None
        self.outcome = "none"
        self.started = dt.datetime.now(dt.UTC)

    # ------------------------------------------------------------------ driver

    async def execute(self) -> None:
        try:
            self.kind = domain.pin_kind(self.content)
        except InvalidContent:
            self.kind = None
        pub = await self.repo.load(self.p.post_id)
        if pub is None:
            pub = await self.repo.insert_new(
                post_id=self.p.post_id,
                workspace_id=self.event.workspace_id,
                account_id=self.content.pinterest_account_id,
                board_id=self.content.board_id,
                kind=self.kind.value if self.kind else "invalid",
                attempt=self.p.attempt,
            )
        elif pub.state in FINAL_STATES:
            self.outcome = f"already_{pub.state}"
            return
        elif self.p.attempt < pub.next_attempt:
            self.outcome = "stale_attempt"
            return
        self.create_started_at = pub.create_started_at
        self.last_create_at = pub.last_create_at
        self.reserved_slot = pub.reserved_slot
        self.failures = pub.failures
        self.rate_limited = pub.rate_limited
        if pub.create_started_at is not None:
            bind_context(reconcile_since=pub.create_started_at.isoformat())
        await self.repo.begin_run(self.p.post_id, self.p.attempt, *self._announce(pub))
        try:
            try:
                await self._steps()
            except _Done:
                raise
            except TRANSIENT_INFRA_ERRORS:
                raise
            except asyncpg.PostgresError:
                raise
            except (TokenError, MediaFetchError, InvalidContent, pe.PinterestError) as exc:
                await self._on_error(exc)
            except Exception as exc:
                log.exception("publish_unexpected_error")
                await self._retry_failure(
                    PostError(
                        code="internal_error",
                        message=f"Unexpected error while publishing ({type(exc).__name__}).",
                        retryable=True,
                    )
                )
        except _Done:
            return

    def _announce(self, pub: Publication) -> list[PostPublishingEvent]:
        if pub.state == "new" or pub.resume_reason in ("failure", "resumed"):
            return [
                PostPublishingEvent(
                    **caused_by(self.event),
                    producer=PRODUCER,
                    payload=PostPublishing(post_id=self.p.post_id, attempt=self.p.attempt),
                )
            ]
        return []

    async def _steps(self) -> None:
        if self.kind is None:
            domain.pin_kind(self.content)  # raises InvalidContent with the reason
            return
        if not self.account:
            await self._fail(
                "pinterest_account_missing",
                "No Pinterest account is connected to this post's profile. Connect one and "
                "schedule the post again.",
            )
        self.token = await self.svc.tokens.get(self.account)
        if self.create_started_at is not None:
            await self._reconcile()
        media_id: str | None = None
        if self.kind is PinKind.VIDEO:
            media_id = await self._video()
        body = domain.build_pin(self.content, media_id)
        await self._pace()
        await self._create(body)

    # ------------------------------------------------------------------ steps

    async def _call(self, fn: Callable[[str], Awaitable[T]]) -> T:
        """A Pinterest call; on a 401, have auth replace the token and try once more."""
        try:
            return await fn(self.token)
        except pe.Unauthorized as err:
            if err.missing_scope or self.reauthed:
                raise
            self.reauthed = True
            log.info("pinterest_token_refused", code=err.code)
            self.token = await self.svc.tokens.invalidate(self.account, self.token)
            return await fn(self.token)

    @contextlib.asynccontextmanager
    async def _step(self, name: str) -> AsyncIterator[_Step]:
        step_id = await self.repo.start_step(self.p.post_id, self.p.attempt, name)
        step = _Step()
        try:
            yield step
        except _Done:
            await self.repo.finish_step(step_id, step.outcome, step.detail)
            raise
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            with contextlib.suppress(Exception):
                await self.repo.finish_step(step_id, "error", f"{type(exc).__name__}: {exc}")
            raise
        else:
            await self.repo.finish_step(step_id, step.outcome, step.detail)

    async def _reconcile(self, *, settle: bool = True) -> float:
        """Look for the pin an earlier, unanswered create may have made; adopt it if found.

        Not found, and the latest create may still be running at Pinterest (our side gave
        up or died, theirs did not): with ``settle`` come back once it must have ended,
        else return the seconds until then (0 when settled).
        """
        assert self.create_started_at is not None
        since = self.create_started_at - dt.timedelta(seconds=self.svc.settings.reconcile_skew)
        found: Pin | None = None
        async with self._step("reconcile") as step:

            async def scan(token: str) -> Pin | None:
                older = 0
                async for pin in self.svc.pinterest.iter_board_pins(token, self.content.board_id):
                    if pin.created_at is not None and pin.created_at < since:
                        older += 1
                        if older >= _RECONCILE_OLDER_LIMIT:
                            return None
                        continue
                    if domain.pin_matches(pin, self.content, since) and not (
                        await self.repo.is_claimed(pin.id)
                    ):
                        return pin
                return None

            found = await self._call(scan)
            step.outcome = "adopted" if found else "not_found"
            step.detail = found.id if found else None
        self.svc.metrics.reconciliations.labels(step.outcome).inc()
        if found is not None:
            log.info("pin_adopted", pin_id=found.id)
            await self._published(found, adopted=True)
        remaining = 0.0
        if self.last_create_at is not None:
            settled_at = self.last_create_at + dt.timedelta(
                seconds=self.svc.settings.pinterest_timeout + 1
            )
            remaining = max(0.0, await self.repo.seconds_until(settled_at))
        if settle and remaining > 0:
            await self._wait(remaining, "reconcile")
        return remaining

    async def _video(self) -> str | None:
        s = self.svc.settings
        media = await self.repo.get_media(self.p.post_id)
        if media is not None and media.status == "succeeded":
            return media.media_id
        if media is None:
            await self._pace()
            async with (
                self._step("media_upload") as step,
                self.svc.downloader.download(self.content.media_urls[0]) as file,
            ):
                registration = await self._call(self.svc.pinterest.register_media)
                await self.svc.pinterest.upload_media(registration, file.path)
                await self.repo.save_media(self.p.post_id, registration.media_id, file.size)
                step.detail = f"media_id={registration.media_id} bytes={file.size}"
            await self._wait(
                domain.media_poll_delay(0, s.media_poll_initial, s.media_poll_max), "media_poll"
            )
        assert media is not None
        media_id = media.media_id
        async with self._step("media_poll") as step:
            status = await self._call(lambda token: self.svc.pinterest.get_media(token, media_id))
            step.detail = f"media_id={media_id} status={status.status}"
        polls = media.polls + 1
        if status.status == "succeeded":
            await self.repo.update_media(self.p.post_id, "succeeded", polls)
            return media_id
        if status.status == "failed":
            await self.repo.update_media(self.p.post_id, "failed", polls)
            await self._fail(
                "video_processing_failed",
                "Pinterest could not process the video. Check that the file is a valid MP4, "
                "MOV or M4V video that plays, then schedule the post again.",
            )
        await self.repo.update_media(self.p.post_id, "uploaded", polls)
        elapsed = (dt.datetime.now(dt.UTC) - media.uploaded_at).total_seconds()
        if elapsed > s.media_processing_timeout:
            await self._fail(
                "video_processing_timeout",
                f"Pinterest was still processing the video after {elapsed / 60:.0f} minutes. "
                "Try a shorter or smaller video.",
            )
        await self._wait(
            domain.media_poll_delay(polls, s.media_poll_initial, s.media_poll_max), "media_poll"
        )
        return None  # unreachable: _wait raises _Done

    async def _pace(self) -> None:
        """Wait for this account's next write slot, or come back for it through a retry."""
        s = self.svc.settings
        interval = domain.write_interval(s.writes_per_minute)
        slot = self.reserved_slot
        wait = 0.0
        if slot is not None:
            self.reserved_slot = None
            wait = await self.repo.seconds_until(slot)
            if wait < -interval:
                slot = None  # came back late: writing now could bunch with the next slot
        if slot is None:
            slot, wait = await self.repo.reserve_slot(self.account, interval)
        if wait > s.pacing_max_wait:
            await self._wait(wait, "pacing", slot=slot)
        if wait > 0:
            self.svc.metrics.pacing_wait.observe(wait)
            await asyncio.sleep(wait)
        else:
            self.svc.metrics.pacing_wait.observe(0)

    async def _create(self, body: PinCreate) -> None:
        self.creating = True
        self.create_started_at, self.last_create_at = await self.repo.mark_create_started(
            self.p.post_id
        )
        async with self._step("create") as step:
            started = time.perf_counter()
            pin = await self._call(lambda token: self.svc.pinterest.create_pin(token, body))
            self.svc.metrics.create_latency.observe(time.perf_counter() - started)
            step.detail = pin.id
        await self._published(pin, adopted=False)

    # ------------------------------------------------------------------ outcomes

    async def _published(self, pin: Pin, *, adopted: bool) -> None:
        url = domain.pin_url(pin.id)
        event = PostPublishedEvent(
            **caused_by(self.event),
            producer=PRODUCER,
            payload=PostPublished(
                post_id=self.p.post_id,
                pin_id=pin.id,
                pin_url=url,
                board_id=pin.board_id or self.content.board_id,
                attempt=self.p.attempt,
                published_at=dt.datetime.now(dt.UTC),
            ),
        )
        try:
            await self.repo.record_published(
                self.p.post_id, pin_id=pin.id, pin_url=url, adopted=adopted, event=event
            )
        except PinAlreadyClaimed:
            # A twin post (same board and texts) adopted this pin while our answer was on
            # its way. Try again: reconciliation runs first and finds what is left.
            log.error("pin_claimed_by_another_post", pin_id=pin.id)
            await self._retry_failure(
                PostError(
                    code="pinterest_unavailable",
                    message="The pin could not be recorded; the post is checked again.",
                    retryable=True,
                )
            )
        kind = self.kind.value if self.kind else "unknown"
        self.svc.metrics.published.labels(kind, "adopted" if adopted else "created").inc()
        self.outcome = "adopted" if adopted else "published"
        log.info("post_published", pin_id=pin.id, adopted=adopted)
        raise _Done

    async def _fail(self, code: str, message: str, *, retryable: bool = False) -> None:
        await self._fail_with(PostError(code=code, message=message, retryable=retryable))

    async def _fail_with(self, error: PostError) -> None:
        event = PostFailedEvent(
            **caused_by(self.event),
            producer=PRODUCER,
            payload=PostFailed(post_id=self.p.post_id, attempt=self.p.attempt, error=error),
        )
        await self.repo.record_failed(self.p.post_id, error, event)
        self.svc.metrics.failed.labels(error.code).inc()
        self.outcome = f"failed:{error.code}"
        log.warning("post_failed", code=error.code, reason=error.message)
        raise _Done

    async def _wait(
        self,
        seconds: float,
        reason: str,
        *,
        slot: dt.datetime | None = None,
        error: PostError | None = None,
    ) -> None:
        """Come back in ``seconds`` through the scheduler (post.retry, attempt + 1)."""
        retry_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=max(0.0, seconds))
        texts = {
            "pacing": "Waiting for a publishing slot: Pinterest limits how often one account "
            "may publish.",
            "media_poll": "Waiting for Pinterest to finish processing the video.",
            "reconcile": "Checking whether an interrupted publish reached Pinterest before "
            "trying again.",
        }
        if error is not None:
            text = f"{error.message} Trying again (attempt {self.p.attempt + 1})."
        else:
            text = texts.get(reason, reason)
        event = PostRetryEvent(
            **caused_by(self.event),
            producer=PRODUCER,
            payload=PostRetry(
                post_id=self.p.post_id,
                attempt=self.p.attempt + 1,
                retry_at=retry_at,
                reason=text,
                content=self.content,
            ),
        )
        await self.repo.record_waiting(
            self.p.post_id,
            next_attempt=self.p.attempt + 1,
            reason=reason,
            failed=reason == "failure",
            reserved_slot=slot,
            last_error=error,
            event=event,
            rate_limited=reason == "rate_limited",
        )
        self.svc.metrics.retries.labels(reason).inc()
        self.outcome = f"retry:{reason}"
        log.info("post_retry_scheduled", reason=reason, delay=round(seconds, 2))
        raise _Done

    async def _pause(self, exc: NeedsReauth) -> None:
        """The account needs reauth: pause the post until it is reconnected (pauses.py)."""
        if isinstance(exc, TokenStillRefused):  # auth does not expect a reconnect
            await self._fail("pinterest_reauth_required", domain.reauth_message())
        if self.creating:
            # Pinterest answered the create with a 401: nothing of it is still running, so
            # the resumed run need not wait for it to settle (it still looks for the pin).
            await self.repo.create_answered(self.p.post_id)
        paused = await pause_post(
            self.repo.conn,
            self.svc.schema,
            self.event,
            reason=exc.reason or "authorisation refused",
            run_started=self.started,
            grace_hours=self.svc.settings.pause_grace_hours,
        )
        if not paused:  # reconnected meanwhile: run it again (once, after the margin)
            await self._wait(RECONNECT_MARGIN.total_seconds(), "reconnected")
        self.outcome = "paused"
        raise _Done

    async def _retry_failure(self, error: PostError, min_delay: float | None = None) -> None:
        s = self.svc.settings
        failures = self.failures + 1
        if failures >= s.max_attempts:
            await self._fail_with(domain.exhausted_error(error, failures))
        delay = domain.backoff_delay(failures, s.retry_base_delay, s.retry_max_delay, self.svc.rng)
        if min_delay is not None:
            delay = max(delay, min_delay)
        await self._wait(delay, "failure", error=error)

    async def _retry_rate_limited(self, error: PostError, pause: float) -> None:
        s = self.svc.settings
        limited = self.rate_limited + 1
        if limited >= s.max_rate_limited:
            await self._fail_with(
                PostError(
                    code=error.code,
                    message=f"Gave up after Pinterest refused {limited} times for its rate "
                    "limit. Publish fewer posts at once for this account, or retry later.",
                    retryable=True,
                )
            )
        delay = domain.backoff_delay(limited, s.rate_limit_backoff, s.retry_max_delay, self.svc.rng)
        await self._wait(max(delay, pause), "rate_limited", error=error)

    async def _on_error(self, exc: Exception) -> None:
        if isinstance(exc, NeedsReauth):
            await self._pause(exc)
        if isinstance(exc, UnknownAccount):
            await self._fail(
                "pinterest_account_not_connected",
                "The Pinterest account of this profile is no longer connected. Reconnect it "
                "and schedule the post again.",
            )
        if isinstance(exc, AuthUnavailable):
            log.warning("auth_unavailable", error=str(exc))
            await self._retry_failure(
                PostError(
                    code="auth_unavailable",
                    message="The account's Pinterest authorization could not be read right now.",
                    retryable=True,
                )
            )
        if isinstance(exc, InvalidContent):
            await self._fail("invalid_content", f"The post cannot be published: {exc}")
        if isinstance(exc, MediaFetchError):
            if exc.permanent:
                await self._fail(exc.code, exc.message)
            await self._retry_failure(PostError(code=exc.code, message=exc.message, retryable=True))
        assert isinstance(exc, pe.PinterestError)
        verdict = domain.classify(exc, during_create=self.creating)
        self.svc.metrics.pinterest_errors.labels(verdict.code).inc()
        if verdict.action is Action.REAUTH:
            await self._fail(verdict.code, verdict.message)
        if verdict.action is Action.FAIL:
            await self._fail(verdict.code, verdict.message)
        pause = 0.0
        if verdict.rate_limited:
            pause = verdict.retry_after or self.svc.settings.rate_limit_backoff
            await self.repo.pause_account(self.account, pause)
        if verdict.code == "pinterest_media_lost":
            await self.repo.forget_media(self.p.post_id)
        if self.creating and not isinstance(exc, pe.PinterestTransportError):
            # Pinterest answered: that create is over, nothing of it is still running.
            await self.repo.create_answered(self.p.post_id)
            self.last_create_at = None
        if verdict.rate_limited:
            # Pinterest answered (nothing was created) and asked us to slow down: wait,
            # without spending the failure budget. MAX_RATE_LIMITED bounds the waiting.
            await self._retry_rate_limited(
                PostError(code=verdict.code, message=verdict.message, retryable=True), pause
            )
        min_delay = max(pause, verdict.retry_after or 0.0)
        if verdict.outcome_unknown and self.create_started_at is not None:
            # The pin may exist: look now (the next run looks again before creating).
            log.info("create_outcome_unknown", error=str(exc))
            with contextlib.suppress(pe.PinterestError, TokenError):
                remaining = await self._reconcile(settle=False)
                if isinstance(exc, pe.PinterestTransportError):
                    # No answer: Pinterest may still be creating it. Retry after that.
                    min_delay = max(min_delay, remaining)
        await self._retry_failure(
            PostError(code=verdict.code, message=verdict.message, retryable=True),
            min_delay=min_delay or None,
        )
