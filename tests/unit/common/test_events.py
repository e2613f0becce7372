"""Event envelope: round trips, discrimination, forward compatibility, checked-in schemas."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pydantic
import pytest
from codiv_common import events as ev

SCHEMA_DIR = Path(__file__).resolve().parents[3] / "schemas" / "events"


def _content() -> ev.PostContent:
    return ev.PostContent(post_type="image", board_id="123", media_urls=["https://x.test/a.jpg"])


def test_round_trip_keeps_type_and_payload() -> None:
    event = ev.PostRequestedEvent(
        workspace_id=uuid.uuid4(),
        payload=ev.PostRequested(post_id=uuid.uuid4(), profile_name="shop", content=_content()),
    )
    decoded = ev.decode_event(ev.encode_event(event))
    assert isinstance(decoded, ev.PostRequestedEvent)
    assert decoded == event


def test_discriminator_picks_the_model_by_type() -> None:
    body = {
        "event_id": str(uuid.uuid4()),
        "type": "post.cancelled",
        "occurred_at": datetime.now(UTC).isoformat(),
        "workspace_id": str(uuid.uuid4()),
        "payload": {"post_id": str(uuid.uuid4())},
    }
    assert isinstance(ev.decode_event(json.dumps(body)), ev.PostCancelledEvent)
    body["type"] = "post.unknown"
    with pytest.raises(pydantic.ValidationError):
        ev.decode_event(json.dumps(body))


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    body = {
        "event_id": str(uuid.uuid4()),
        "type": "post.cancelled",
        "occurred_at": "2026-01-01T00:00:00Z",
        "workspace_id": str(uuid.uuid4()),
        "future_field": 1,
        "payload": {"post_id": str(uuid.uuid4()), "reason_added_in_v1_3": "x"},
    }
    assert ev.decode_event(json.dumps(body)).type == "post.cancelled"


def test_naive_timestamps_are_refused() -> None:
    body = {
        "type": "post.cancelled",
        "occurred_at": "2026-01-01T00:00:00",
        "workspace_id": str(uuid.uuid4()),
        "payload": {"post_id": str(uuid.uuid4())},
    }
    with pytest.raises(pydantic.ValidationError):
        ev.decode_event(json.dumps(body))


def test_newer_major_version_is_refused() -> None:
    event = ev.PostCancelledEvent(
        workspace_id=uuid.uuid4(), version=2, payload=ev.PostCancelled(post_id=uuid.uuid4())
    )
    with pytest.raises(ev.UnsupportedEventVersion):
        ev.decode_event(ev.encode_event(event))


def test_caused_by_carries_correlation() -> None:
    parent = ev.PostCancelledEvent(
        workspace_id=uuid.uuid4(), payload=ev.PostCancelled(post_id=uuid.uuid4())
    )
    fields = ev.caused_by(parent)
    assert fields["correlation_id"] == parent.event_id
    assert fields["causation_id"] == parent.event_id
    assert fields["workspace_id"] == parent.workspace_id


def test_checked_in_schemas_are_current() -> None:
    """Fails when an event model changed but `make schemas` was not run."""
    expected = ev.event_json_schemas()
    on_disk = {p.name.removesuffix(".v1.schema.json"): p for p in SCHEMA_DIR.glob("*.json")}
    assert set(on_disk) == set(expected), "run `make schemas` and commit schemas/events"
    for name, schema in expected.items():
        assert json.loads(on_disk[name].read_text()) == schema, (
            f"schemas/events/{name} is stale: run `make schemas`"
        )


def test_every_routing_key_has_a_model() -> None:
    required = {
        "post.requested",
        "post.cancelled",
        "post.rescheduled",
        "post.due",
        "post.retry",
        "post.published",
        "post.failed",
        "account.connected",
        "account.boards_synced",
        "account.needs_reauth",
        "pin.metrics",
    }
    assert required <= set(ev.EVENT_TYPES)
