"""Scheduling rules: every command against every job state, duplicates and reordering."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from codiv_common.events import PostContent
from codiv_scheduler.domain import (
    Change,
    ChangeKind,
    Job,
    JobState,
    decide,
    due_event_id,
)

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
POST = uuid.UUID("11111111-1111-1111-1111-111111111111")
WS = uuid.UUID("22222222-2222-2222-2222-222222222222")
CONTENT = PostContent(post_type="image", board_id="1", media_urls=["https://x/a.jpg"])
EDITED = PostContent(post_type="image", board_id="2", media_urls=["https://x/b.jpg"])


def change(
    kind: ChangeKind,
    *,
    at: datetime = T0,
    due: datetime | None = None,
    content: PostContent | None = None,
    revision: int = 0,
    attempt: int = 1,
) -> Change:
    if content is None and kind in ("request", "retry"):
        content = CONTENT
    return Change(
        kind=kind,
        post_id=POST,
        workspace_id=WS,
        event_id=uuid.uuid4(),
        occurred_at=at,
        scheduled_at=due,
        content=content,
        revision=revision,
        attempt=attempt,
    )


def apply(job: Job | None, *changes: Change, now: datetime = T0) -> Job | None:
    for c in changes:
        d = decide(job, c, now)
        if d.job is not None:
            job = d.job
    return job


def test_request_schedules_pending_at_its_time() -> None:
    d = decide(None, change("request", due=T0 + timedelta(days=3)), T0)
    assert d.job is not None
    assert d.job.state == JobState.PENDING
    assert d.job.due_at == T0 + timedelta(days=3)
    assert d.job.attempt == 1
    assert d.job.content == CONTENT


def test_request_without_time_is_due_when_asked_never_in_the_future() -> None:
    d = decide(None, change("request", at=T0 - timedelta(seconds=5)), T0)
    assert d.job is not None
    assert d.job.due_at == T0 - timedelta(seconds=5)
    skewed = decide(None, change("request", at=T0 + timedelta(hours=1)), T0)
    assert skewed.job is not None
    assert skewed.job.due_at == T0


def test_cancel_before_request_leaves_a_tombstone_that_wins() -> None:
    tomb = decide(None, change("cancel"), T0)
    assert tomb.outcome == "tombstoned"
    assert tomb.job is not None
    assert tomb.job.state == JobState.CANCELLED
    late_request = decide(tomb.job, change("request", due=T0 + timedelta(hours=1)), T0)
    assert late_request.job is None
    assert late_request.outcome == "ignored_cancelled"
    assert late_request.rejection is None


def test_cancel_pending_then_duplicate_cancel() -> None:
    job = apply(None, change("request", due=T0 + timedelta(hours=1)))
    d = decide(job, change("cancel"), T0)
    assert d.job is not None
    assert d.job.state == JobState.CANCELLED
    again = decide(d.job, change("cancel"), T0)
    assert again.job is None
    assert again.rejection is None


def test_cancel_or_reschedule_after_release_is_rejected_and_changes_nothing() -> None:
    job = apply(None, change("request", due=T0))
    assert job is not None
    released = Job(**{**job.__dict__, "state": JobState.RELEASED})
    for c in (change("cancel"), change("reschedule", due=T0 + timedelta(days=1), revision=5)):
        d = decide(released, c, T0)
        assert d.job is None
        assert d.rejection is not None
        assert d.rejection.change == ("cancel" if c.kind == "cancel" else "reschedule")
        assert "released" in d.rejection.reason


def test_reschedule_after_cancel_is_rejected() -> None:
    job = apply(None, change("request", due=T0 + timedelta(hours=1)), change("cancel"))
    d = decide(job, change("reschedule", due=T0 + timedelta(hours=2), revision=1), T0)
    assert d.job is None
    assert d.rejection is not None
    assert d.rejection.change == "reschedule"


@pytest.mark.parametrize("delta", [timedelta(minutes=-30), timedelta(hours=5)])
def test_reschedule_earlier_or_later_moves_due_and_can_edit_content(delta: timedelta) -> None:
    due = T0 + timedelta(hours=1)
    job = apply(None, change("request", due=due))
    d = decide(job, change("reschedule", due=due + delta, revision=1, content=EDITED), T0)
    assert d.outcome == "rescheduled"
    assert d.job is not None
    assert d.job.due_at == due + delta
    assert d.job.content == EDITED
    keep = decide(d.job, change("reschedule", due=due, revision=2), T0)
    assert keep.job is not None
    assert keep.job.content == EDITED


def test_reschedules_apply_in_revision_order_whatever_the_arrival_order() -> None:
    job = apply(None, change("request", due=T0 + timedelta(hours=1)))
    r1 = change("reschedule", due=T0 + timedelta(hours=2), revision=1, at=T0 + timedelta(1))
    r2 = change("reschedule", due=T0 + timedelta(hours=3), revision=2, at=T0)
    in_order = apply(job, r1, r2)
    reversed_ = apply(job, r2, r1)
    assert in_order is not None
    assert reversed_ is not None
    assert in_order.due_at == reversed_.due_at == T0 + timedelta(hours=3)
    assert decide(in_order, r1, T0).outcome == "ignored_stale"


def test_reschedules_without_revision_fall_back_to_occurred_at() -> None:
    job = apply(None, change("request", due=T0 + timedelta(hours=1), at=T0))
    older = change("reschedule", due=T0 + timedelta(hours=2), at=T0 + timedelta(seconds=1))
    newer = change("reschedule", due=T0 + timedelta(hours=4), at=T0 + timedelta(seconds=2))
    final = apply(job, newer, older)
    assert final is not None
    assert final.due_at == T0 + timedelta(hours=4)


def test_reschedule_before_request_is_kept_and_wins_over_the_late_request() -> None:
    early = decide(None, change("reschedule", due=T0 + timedelta(hours=9), revision=1), T0)
    assert early.job is not None
    assert early.job.state == JobState.AWAITING_REQUEST
    assert decide(early.job, change("cancel"), T0).job is not None
    d = decide(early.job, change("request", due=T0 + timedelta(hours=1)), T0)
    assert d.job is not None
    assert d.job.state == JobState.PENDING
    assert d.job.due_at == T0 + timedelta(hours=9)
    assert d.job.content == CONTENT  # the reschedule had no content: the request's


def test_duplicate_request_is_ignored() -> None:
    job = apply(None, change("request", due=T0 + timedelta(hours=1)))
    d = decide(job, change("request", due=T0 + timedelta(hours=7)), T0)
    assert d.job is None
    assert d.outcome == "ignored_duplicate_request"


def test_retry_reopens_a_released_job_with_the_new_attempt_once() -> None:
    job = apply(None, change("request", due=T0))
    assert job is not None
    released = Job(**{**job.__dict__, "state": JobState.RELEASED})
    retry = change("retry", due=T0 + timedelta(minutes=2), attempt=2, content=EDITED)
    d = decide(released, retry, T0)
    assert d.job is not None
    assert (d.job.state, d.job.attempt, d.job.due_at) == (
        JobState.PENDING,
        2,
        T0 + timedelta(minutes=2),
    )
    assert d.job.content == EDITED
    assert decide(d.job, retry, T0).job is None  # same attempt again: stale
    again = Job(**{**d.job.__dict__, "state": JobState.RELEASED})
    assert decide(again, change("retry", due=T0, attempt=2), T0).job is None


def test_retry_of_a_cancelled_post_is_ignored_and_cancel_honoured_while_retry_waits() -> None:
    job = apply(None, change("request", due=T0))
    assert job is not None
    released = Job(**{**job.__dict__, "state": JobState.RELEASED})
    waiting = apply(released, change("retry", due=T0 + timedelta(minutes=1), attempt=2))
    cancelled = decide(waiting, change("cancel"), T0)
    assert cancelled.job is not None
    assert cancelled.job.state == JobState.CANCELLED
    late = decide(cancelled.job, change("retry", due=T0, attempt=3), T0)
    assert late.job is None
    assert late.outcome == "ignored_cancelled"


def test_retry_for_unknown_post_is_scheduled() -> None:
    d = decide(None, change("retry", due=T0, attempt=3), T0)
    assert d.job is not None
    assert d.job.state == JobState.PENDING
    assert d.job.attempt == 3


def test_due_event_id_is_stable_per_post_and_attempt() -> None:
    assert due_event_id(POST, 1) == due_event_id(POST, 1)
    assert due_event_id(POST, 1) != due_event_id(POST, 2)
