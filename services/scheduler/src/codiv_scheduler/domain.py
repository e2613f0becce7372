"""Pure scheduling rules: how each command changes a job, and what a release emits."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Literal

from codiv_common.events import PostContent, PostDue

# Namespace of the deterministic post.due event ids: uuid5(namespace, "<post_id>:<attempt>").
DUE_EVENT_NAMESPACE = uuid.UUID("0b6c3f1e-5d1a-4a8e-9a57-2f1d5c4b9e10")


class JobState(StrEnum):
    """Lifecycle of a job; ``released`` and ``cancelled`` end it (a retry re-opens ``released``)."""

    AWAITING_REQUEST = "awaiting_request"
    PENDING = "pending"
    RELEASED = "released"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class Job:
    """What the scheduler knows about one post."""

    post_id: uuid.UUID
    workspace_id: uuid.UUID
    state: JobState
    due_at: datetime | None
    attempt: int
    content: PostContent | None
    revision: int
    changed_at: datetime
    correlation_id: uuid.UUID | None = None
    causation_id: uuid.UUID | None = None

    @property
    def order_key(self) -> tuple[int, datetime]:
        """Position of the last applied schedule change: (revision, occurred_at)."""
        return (self.revision, self.changed_at)


ChangeKind = Literal["request", "reschedule", "cancel", "retry"]


@dataclass(frozen=True)
class Change:
    """One consumed command, reduced to what the rules need."""

    kind: ChangeKind
    post_id: uuid.UUID
    workspace_id: uuid.UUID
    event_id: uuid.UUID
    occurred_at: datetime
    correlation_id: uuid.UUID | None = None
    scheduled_at: datetime | None = None
    content: PostContent | None = None
    revision: int = 0
    attempt: int = 1

    @property
    def order_key(self) -> tuple[int, datetime]:
        return (self.revision, self.occurred_at)

    def due_at(self, now: datetime) -> datetime:
        """``scheduled_at``, or "now" = when it was asked (never later than ``now``)."""
        if self.scheduled_at is not None:
            return self.scheduled_at
        return min(self.occurred_at, now)


@dataclass(frozen=True)
class Rejection:
    """A cancel or reschedule that came too late: reported as post.change_rejected."""

    change: Literal["cancel", "reschedule"]
    reason: str


@dataclass(frozen=True)
class Decision:
    """The outcome of one change: the job to store (None = unchanged) and what to report."""

    outcome: str
    job: Job | None = None
    rejection: Rejection | None = None


def decide(job: Job | None, change: Change, now: datetime) -> Decision:
    """Apply ``change`` to ``job`` (None when the post is unknown).

    Duplicates and reordering leave a correct state: a request never overrides a
    cancel or a newer reschedule; a reschedule applies only when its (revision,
    occurred_at) is newer than the last applied one; a retry only when its attempt
    is newer; cancel and reschedule after release change nothing and are rejected.
    """
    if change.kind == "request":
        return _request(job, change, now)
    if change.kind == "reschedule":
        return _reschedule(job, change, now)
    if change.kind == "cancel":
        return _cancel(job, change)
    return _retry(job, change, now)


def _new_job(change: Change, state: JobState, due_at: datetime | None) -> Job:
    return Job(
        post_id=change.post_id,
        workspace_id=change.workspace_id,
        state=state,
        due_at=due_at,
        attempt=change.attempt if change.kind == "retry" else 1,
        content=change.content,
        revision=change.revision,
        changed_at=change.occurred_at,
        correlation_id=change.correlation_id,
        causation_id=change.event_id,
    )


def _request(job: Job | None, change: Change, now: datetime) -> Decision:
    if change.content is None:
        raise ValueError("a request carries content")
    if job is None:
        return Decision("scheduled", _new_job(change, JobState.PENDING, change.due_at(now)))
    if job.state == JobState.AWAITING_REQUEST:
        # A reschedule arrived first: it is newer than the request unless its order says not.
        newer = job.order_key > change.order_key
        return Decision(
            "scheduled_after_reschedule",
            replace(
                job,
                state=JobState.PENDING,
                due_at=job.due_at if newer else change.due_at(now),
                content=job.content or change.content,
                revision=job.revision if newer else change.revision,
                changed_at=job.changed_at if newer else change.occurred_at,
                correlation_id=job.correlation_id or change.correlation_id,
                causation_id=change.event_id,
            ),
        )
    if job.state == JobState.CANCELLED:
        return Decision("ignored_cancelled")
    return Decision("ignored_duplicate_request")


def _reschedule(job: Job | None, change: Change, now: datetime) -> Decision:
    due_at = change.due_at(now)
    if job is None:
        return Decision("awaiting_request", _new_job(change, JobState.AWAITING_REQUEST, due_at))
    if job.state == JobState.RELEASED:
        return Decision(
            "rejected_released",
            rejection=Rejection("reschedule", f"already released (attempt {job.attempt})"),
        )
    if job.state == JobState.CANCELLED:
        return Decision("rejected_cancelled", rejection=Rejection("reschedule", "post cancelled"))
    if change.order_key <= job.order_key:
        return Decision("ignored_stale")
    return Decision(
        "rescheduled",
        replace(
            job,
            due_at=due_at,
            content=change.content or job.content,
            revision=change.revision,
            changed_at=change.occurred_at,
            causation_id=change.event_id,
        ),
    )


def _cancel(job: Job | None, change: Change) -> Decision:
    if job is None:
        return Decision("tombstoned", _new_job(change, JobState.CANCELLED, None))
    if job.state == JobState.CANCELLED:
        return Decision("ignored_cancelled")
    if job.state == JobState.RELEASED:
        return Decision(
            "rejected_released",
            rejection=Rejection("cancel", f"already released (attempt {job.attempt})"),
        )
    return Decision(
        "cancelled", replace(job, state=JobState.CANCELLED, causation_id=change.event_id)
    )


def _retry(job: Job | None, change: Change, now: datetime) -> Decision:
    if change.content is None:
        raise ValueError("a retry carries content")
    due_at = change.due_at(now)
    if job is None:
        return Decision("retry_scheduled", _new_job(change, JobState.PENDING, due_at))
    if job.state == JobState.CANCELLED:
        return Decision("ignored_cancelled")
    if job.state != JobState.AWAITING_REQUEST and change.attempt <= job.attempt:
        return Decision("ignored_stale_attempt")
    return Decision(
        "retry_scheduled",
        replace(
            job,
            state=JobState.PENDING,
            due_at=due_at,
            attempt=change.attempt,
            content=change.content,
            causation_id=change.event_id,
            correlation_id=job.correlation_id or change.correlation_id,
        ),
    )


def due_event_id(post_id: uuid.UUID, attempt: int) -> uuid.UUID:
    """The post.due event id of one release: the same (post, attempt) always gets the same id."""
    return uuid.uuid5(DUE_EVENT_NAMESPACE, f"{post_id}:{attempt}")


def due_payload(
    post_id: uuid.UUID, attempt: int, due_at: datetime, content: PostContent
) -> PostDue:
    """The post.due payload of a released job."""
    return PostDue(post_id=post_id, attempt=attempt, due_at=due_at, content=content)
