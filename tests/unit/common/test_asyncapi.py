"""The AsyncAPI document: checked in, current, and its schemas accept real events."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import jsonschema
from codiv_common import events as ev
from codiv_common.asyncapi import build_asyncapi

DOC = Path(__file__).resolve().parents[3] / "schemas" / "asyncapi.json"


def test_checked_in_document_is_current() -> None:
    assert json.loads(DOC.read_text()) == build_asyncapi(), "run `make schemas` and commit"


def test_every_event_has_a_channel_and_message() -> None:
    doc = build_asyncapi()
    assert doc["asyncapi"].startswith("3.")
    for routing_key in ev.EVENT_TYPES:
        name = routing_key.replace(".", "_")
        assert doc["channels"][name]["address"] == routing_key
        assert name in doc["components"]["messages"]
    assert "publish_post_requested" in doc["operations"]
    ingest = doc["channels"]["ingest_post_requested"]["bindings"]["amqp"]["exchange"]["name"]
    assert ingest == "codiv.ingest"
    internal = doc["channels"]["post_requested"]["bindings"]["amqp"]["exchange"]["name"]
    assert internal == "codiv"


def _validator(doc: dict, cls_name: str) -> jsonschema.Validator:  # type: ignore[type-arg]
    schema = {"$ref": f"#/components/schemas/{cls_name}", "components": doc["components"]}
    return jsonschema.Draft202012Validator(schema)


def test_message_schemas_accept_a_real_event_and_refuse_a_broken_one() -> None:
    doc = build_asyncapi()
    event = ev.PostRequestedEvent(
        workspace_id=uuid.uuid4(),
        payload=ev.PostRequested(
            post_id=uuid.uuid4(),
            profile_name="shop",
            content=ev.PostContent(
                post_type="image", board_id="1", media_urls=["https://x.test/a.jpg"]
            ),
        ),
    )
    validator = _validator(doc, "PostRequestedEvent")
    body = json.loads(ev.encode_event(event))
    validator.validate(body)
    body["payload"]["content"]["board_id"] = "not-digits"
    assert list(validator.iter_errors(body))


def test_ingest_schema_accepts_what_the_producer_helper_builds() -> None:
    from codiv_common.producer import build_post_requested

    doc = build_asyncapi()
    event = build_post_requested(
        workspace_id=uuid.uuid4(),
        producer="orders",
        profile_name="shop",
        media_urls=["https://x.test/a.jpg"],
        pinterest_board_id="Living room",
    )
    _validator(doc, "ProducerPostRequestedEvent").validate(json.loads(ev.encode_event(event)))
