"""Versioned event envelope and the v1 event models, decoded through a discriminated union.

Routing key = event type. Consumers must ignore unknown payload fields (forward
compatibility); producers must never remove or retype a field within a major version.
"""

from __future__ import annotations

import argparse
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, TypeAlias, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter

SCHEMA_VERSION = 1


class _Model(BaseModel):
    # Unknown fields are ignored so that a newer minor version never breaks an old consumer.
    model_config = ConfigDict(frozen=True, extra="ignore")


# ---------------------------------------------------------------- payload parts


class PostContent(_Model):
    """What to publish: everything the publisher needs, board already resolved to an id."""

    post_type: Literal["image", "video"]
    pinterest_account_id: str | None = Field(
        default=None, description="Auth service account id of the Pinterest account to post as"
    )
    board_id: str = Field(pattern=r"^\d+$")
    board_section_id: str | None = Field(default=None, pattern=r"^\d+$")
    title: str | None = Field(default=None, max_length=100)
    description: str | None = Field(default=None, max_length=800)
    link: str | None = Field(default=None, max_length=2048)
    alt_text: str | None = Field(default=None, max_length=500)
    media_urls: list[str] = Field(min_length=1, max_length=5)
    cover_image_url: str | None = None
    cover_key_frame_time: float | None = Field(default=None, ge=0)


class Board(_Model):
    """A Pinterest board with its sections, as synced by auth."""

    id: str
    name: str
    privacy: str | None = None
    sections: list[BoardSection] = Field(default_factory=list)


class BoardSection(_Model):
    id: str
    name: str


class PostError(_Model):
    code: str
    message: str
    retryable: bool = False


# ---------------------------------------------------------------- payloads


class PostRequested(_Model):
    """Command: publish this post now, or at ``scheduled_at``."""

    post_id: uuid.UUID
    profile_id: uuid.UUID | None = None
    profile_name: str
    scheduled_at: AwareDatetime | None = None
    content: PostContent


class PostCancelled(_Model):
    """Command: do not release this post."""

    post_id: uuid.UUID


class PostRescheduled(_Model):
    """Command: release the post at a new time; ``content`` set when it was edited too."""

    post_id: uuid.UUID
    scheduled_at: AwareDatetime | None = None
    content: PostContent | None = None
    revision: int = 0


class PostDue(_Model):
    """The scheduler released the post: publish it now (attempt counts from 1)."""

    post_id: uuid.UUID
    attempt: int = Field(default=1, ge=1)
    due_at: AwareDatetime
    content: PostContent


class PostRetry(_Model):
    """The publisher asks the scheduler to release the post again at ``retry_at``."""

    post_id: uuid.UUID
    attempt: int = Field(ge=1, description="The attempt number that will run at retry_at")
    retry_at: AwareDatetime
    reason: str
    content: PostContent
    resumed: bool = Field(
        default=False,
        description="A paused post resumes (its account was reconnected); no attempt failed",
    )


class PostChangeRejected(_Model):
    """A cancel or reschedule arrived after the post was released; nothing changed."""

    post_id: uuid.UUID
    change: Literal["cancel", "reschedule"]
    reason: str


class PostPublishing(_Model):
    post_id: uuid.UUID
    attempt: int = Field(ge=1)


class PostPublished(_Model):
    post_id: uuid.UUID
    pin_id: str
    pin_url: str
    board_id: str
    attempt: int = Field(default=1, ge=1)
    published_at: AwareDatetime


class PostFailed(_Model):
    post_id: uuid.UUID
    attempt: int = Field(default=1, ge=1)
    error: PostError


class PostPaused(_Model):
    """The post's Pinterest account needs reauthorisation: the post waits (not failed).

    It resumes when the account is reconnected, or fails with
    ``pinterest_reauth_required`` at ``fail_at`` (the pause grace period).
    """

    post_id: uuid.UUID
    account_id: str
    attempt: int = Field(default=1, ge=1, description="The attempt that found the account")
    reason: str
    paused_at: AwareDatetime
    fail_at: AwareDatetime | None = None


class PostResumed(_Model):
    """The paused post's account was reconnected: it is released again at ``retry_at``."""

    post_id: uuid.UUID
    account_id: str
    attempt: int = Field(ge=1, description="The attempt number that will run at retry_at")
    paused_at: AwareDatetime | None = None
    retry_at: AwareDatetime


class AccountConnected(_Model):
    account_id: str
    profile_id: uuid.UUID
    pinterest_user_id: str | None = None
    username: str | None = None
    reconnected: bool = False


class AccountDisconnected(_Model):
    account_id: str
    profile_id: uuid.UUID


class AccountDisconnectRequested(_Model):
    """Command (gateway to auth): forget this profile's Pinterest account and its tokens."""

    profile_id: uuid.UUID


class AccountSyncRequested(_Model):
    """Command (gateway to auth): sync this profile's boards now."""

    profile_id: uuid.UUID


class AccountBoardsSynced(_Model):
    account_id: str
    profile_id: uuid.UUID
    boards: list[Board]


class AccountNeedsReauth(_Model):
    account_id: str
    profile_id: uuid.UUID
    reason: str


class AccountTokenExpiring(_Model):
    account_id: str
    profile_id: uuid.UUID
    refresh_token_expires_at: AwareDatetime


class MetricPoint(_Model):
    date: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")
    data_status: str | None = None
    metrics: dict[str, float]


class PinMetrics(_Model):
    post_id: uuid.UUID
    pin_id: str
    account_id: str
    collected_at: AwareDatetime
    daily: list[MetricPoint]


class AccountMetrics(_Model):
    """Daily account-level analytics of one Pinterest account (days not final are resent)."""

    account_id: str
    profile_id: uuid.UUID | None = None
    collected_at: AwareDatetime
    daily: list[MetricPoint]


# ---------------------------------------------------------------- envelope


P = TypeVar("P", bound=_Model)


class _Envelope(_Model):
    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    version: int = SCHEMA_VERSION
    occurred_at: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))
    workspace_id: uuid.UUID
    correlation_id: uuid.UUID | None = None
    causation_id: uuid.UUID | None = None
    producer: str | None = Field(default=None, description="Service or producer that emitted it")


class PostRequestedEvent(_Envelope):
    type: Literal["post.requested"] = "post.requested"
    payload: PostRequested


class PostCancelledEvent(_Envelope):
    type: Literal["post.cancelled"] = "post.cancelled"
    payload: PostCancelled


class PostRescheduledEvent(_Envelope):
    type: Literal["post.rescheduled"] = "post.rescheduled"
    payload: PostRescheduled


class PostDueEvent(_Envelope):
    type: Literal["post.due"] = "post.due"
    payload: PostDue


class PostRetryEvent(_Envelope):
    type: Literal["post.retry"] = "post.retry"
    payload: PostRetry


class PostChangeRejectedEvent(_Envelope):
    type: Literal["post.change_rejected"] = "post.change_rejected"
    payload: PostChangeRejected


class PostPublishingEvent(_Envelope):
    type: Literal["post.publishing"] = "post.publishing"
    payload: PostPublishing


class PostPublishedEvent(_Envelope):
    type: Literal["post.published"] = "post.published"
    payload: PostPublished


class PostFailedEvent(_Envelope):
    type: Literal["post.failed"] = "post.failed"
    payload: PostFailed


class PostPausedEvent(_Envelope):
    type: Literal["post.paused"] = "post.paused"
    payload: PostPaused


class PostResumedEvent(_Envelope):
    type: Literal["post.resumed"] = "post.resumed"
    payload: PostResumed


class AccountConnectedEvent(_Envelope):
    type: Literal["account.connected"] = "account.connected"
    payload: AccountConnected


class AccountDisconnectedEvent(_Envelope):
    type: Literal["account.disconnected"] = "account.disconnected"
    payload: AccountDisconnected


class AccountDisconnectRequestedEvent(_Envelope):
    type: Literal["account.disconnect_requested"] = "account.disconnect_requested"
    payload: AccountDisconnectRequested


class AccountSyncRequestedEvent(_Envelope):
    type: Literal["account.sync_requested"] = "account.sync_requested"
    payload: AccountSyncRequested


class AccountBoardsSyncedEvent(_Envelope):
    type: Literal["account.boards_synced"] = "account.boards_synced"
    payload: AccountBoardsSynced


class AccountNeedsReauthEvent(_Envelope):
    type: Literal["account.needs_reauth"] = "account.needs_reauth"
    payload: AccountNeedsReauth


class AccountTokenExpiringEvent(_Envelope):
    type: Literal["account.token_expiring"] = "account.token_expiring"
    payload: AccountTokenExpiring


class PinMetricsEvent(_Envelope):
    type: Literal["pin.metrics"] = "pin.metrics"
    payload: PinMetrics


class AccountMetricsEvent(_Envelope):
    type: Literal["account.metrics"] = "account.metrics"
    payload: AccountMetrics


Event: TypeAlias = Annotated[
    PostRequestedEvent
    | PostCancelledEvent
    | PostRescheduledEvent
    | PostDueEvent
    | PostRetryEvent
    | PostChangeRejectedEvent
    | PostPublishingEvent
    | PostPublishedEvent
    | PostFailedEvent
    | AccountConnectedEvent
    | AccountDisconnectedEvent
    | AccountDisconnectRequestedEvent
    | AccountSyncRequestedEvent
    | AccountBoardsSyncedEvent
    | AccountNeedsReauthEvent
    | AccountTokenExpiringEvent
    | PinMetricsEvent
    | AccountMetricsEvent
    | PostPausedEvent
    | PostResumedEvent,
    Field(discriminator="type"),
]

EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)

EVENT_TYPES: dict[str, type[_Envelope]] = {
    cls.model_fields["type"].default: cls
    for cls in (
        PostRequestedEvent,
        PostCancelledEvent,
        PostRescheduledEvent,
        PostDueEvent,
        PostRetryEvent,
        PostChangeRejectedEvent,
        PostPublishingEvent,
        PostPublishedEvent,
        PostFailedEvent,
        AccountConnectedEvent,
        AccountDisconnectedEvent,
        AccountDisconnectRequestedEvent,
        AccountSyncRequestedEvent,
        AccountBoardsSyncedEvent,
        AccountNeedsReauthEvent,
        AccountTokenExpiringEvent,
        PinMetricsEvent,
        AccountMetricsEvent,
        PostPausedEvent,
        PostResumedEvent,
    )
}


class UnsupportedEventVersion(ValueError):
    """The event's major version is newer than this code understands."""


def decode_event(body: bytes | str) -> Event:
    """Parse a JSON envelope into its typed event (raises pydantic.ValidationError)."""
    event = EVENT_ADAPTER.validate_json(body)
    if event.version > SCHEMA_VERSION:
        raise UnsupportedEventVersion(f"{event.type} version {event.version} > {SCHEMA_VERSION}")
    return event


def encode_event(event: _Envelope) -> bytes:
    """Serialise an envelope to JSON bytes."""
    return event.model_dump_json().encode()


def caused_by(parent: _Envelope) -> dict[str, Any]:
    """Envelope fields for an event caused by ``parent`` (same workspace and correlation)."""
    return {
        "workspace_id": parent.workspace_id,
        "correlation_id": parent.correlation_id or parent.event_id,
        "causation_id": parent.event_id,
    }


EnvelopeBase = _Envelope


# ---------------------------------------------------------------- internal producers


class PostSubmission(_Model):
    """What an internal producer asks for: the public API's post fields, plus its own id.

    The gateway applies exactly the HTTP rules to it (board names, quotas, URL checks).
    ``post_id`` is chosen by the producer: sending the same id again changes nothing.
    Unknown fields are ignored, missing optional ones take their defaults.
    """

    post_id: uuid.UUID
    profile_name: str
    platforms: list[str] = Field(default_factory=lambda: ["pinterest"])
    post_type: str = "image"
    title: str | None = None
    description: str | None = None
    media_urls: list[str] = Field(default_factory=list)
    pinterest_board_id: str
    pinterest_board_section_id: str | None = None
    pinterest_link: str | None = None
    pinterest_alt_text: str | None = None
    pinterest_cover_image_url: str | None = None
    pinterest_cover_key_frame_time: float | None = None
    scheduled_date: str | None = Field(
        default=None, description="RFC 3339 with an explicit offset; absent means now"
    )


class ProducerPostRequestedEvent(_Envelope):
    """``post.requested`` as an internal producer publishes it onto ``<exchange>.ingest``.

    Not part of :data:`Event`: only the gateway reads it, from its ingest queue, and
    turns it into a validated post (and the internal ``post.requested``).
    """

    type: Literal["post.requested"] = "post.requested"
    payload: PostSubmission


def event_json_schemas() -> dict[str, dict[str, Any]]:
    """JSON Schema of each event envelope, by routing key, plus the union as ``event``."""
    schemas: dict[str, dict[str, Any]] = {
        name: cls.model_json_schema(mode="validation") for name, cls in EVENT_TYPES.items()
    }
    schemas["event"] = EVENT_ADAPTER.json_schema(mode="validation")
    return schemas


def write_schemas(directory: Path) -> list[Path]:
    """Write one ``<type>.v1.schema.json`` file per event (deterministic output)."""
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, schema in sorted(event_json_schemas().items()):
        path = directory / f"{name}.v{SCHEMA_VERSION}.schema.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written


def export_schemas_command(args: argparse.Namespace) -> int:
    """``codiv export-schemas DIR``: JSON Schemas plus ``DIR/../asyncapi.json``."""
    from .asyncapi import write_asyncapi

    directory = Path(args.directory)
    for path in write_schemas(directory):
        print(path)
    asyncapi = directory.parent / "asyncapi.json"
    write_asyncapi(asyncapi)
    print(asyncapi)
    return 0
