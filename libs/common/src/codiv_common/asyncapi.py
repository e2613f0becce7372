"""AsyncAPI 3 document of the events, generated from the same pydantic models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .events import EVENT_TYPES, SCHEMA_VERSION, ProducerPostRequestedEvent

# Events an internal producer may subscribe to for outcomes. What it publishes is the
# ingest channel's ProducerPostRequestedEvent. Everything else is internal to Codiv.
PRODUCER_SUBSCRIBES = ("post.published", "post.failed")
INGEST_EXCHANGE_SUFFIX = ".ingest"


def _amqp_binding(exchange: str) -> dict[str, Any]:
    return {
        "amqp": {
            "is": "routingKey",
            "exchange": {
                "name": exchange,
                "type": "topic",
                "durable": True,
                "autoDelete": False,
                "vhost": "/",
            },
            "bindingVersion": "0.3.0",
        }
    }


def _add_schema(schemas: dict[str, Any], cls: Any) -> None:
    schema = cls.model_json_schema(ref_template="#/components/schemas/{model}")
    for def_name, definition in schema.pop("$defs", {}).items():
        schemas[def_name] = definition
    schemas[cls.__name__] = schema


def build_asyncapi(exchange: str = "codiv") -> dict[str, Any]:
    """The AsyncAPI 3.0 document: channels per routing key, envelope schemas per message."""
    schemas: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for routing_key, cls in sorted(EVENT_TYPES.items()):
        name = routing_key.replace(".", "_")
        _add_schema(schemas, cls)
        messages[name] = {
            "name": routing_key,
            "title": cls.__name__,
            "contentType": "application/json",
            "payload": {"$ref": f"#/components/schemas/{cls.__name__}"},
            "correlationId": {"location": "$message.payload#/correlation_id"},
        }
        channels[name] = {
            "address": routing_key,
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
            "bindings": _amqp_binding(exchange),
        }
        if routing_key in PRODUCER_SUBSCRIBES:
            operations[f"receive_{name}"] = {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{name}"},
                "summary": f"Outcome of a post: bind your own queue to {routing_key}",
            }
    ingest = ProducerPostRequestedEvent
    _add_schema(schemas, ingest)
    messages["ingest_post_requested"] = {
        "name": "post.requested",
        "title": ingest.__name__,
        "contentType": "application/json",
        "payload": {"$ref": f"#/components/schemas/{ingest.__name__}"},
        "correlationId": {"location": "$message.payload#/correlation_id"},
    }
    channels["ingest_post_requested"] = {
        "address": "post.requested",
        "description": "Where internal producers publish; the gateway validates and authorises.",
        "messages": {
            "ingest_post_requested": {"$ref": "#/components/messages/ingest_post_requested"}
        },
        "bindings": _amqp_binding(exchange + INGEST_EXCHANGE_SUFFIX),
    }
    operations["publish_post_requested"] = {
        "action": "send",
        "channel": {"$ref": "#/channels/ingest_post_requested"},
        "summary": f"An internal producer publishes post.requested onto {exchange}.ingest",
        "description": (
            "Set the AMQP user_id property to your RabbitMQ user (the broker verifies it); "
            "persistent delivery; use publisher confirms."
        ),
        "bindings": {"amqp": {"deliveryMode": 2, "bindingVersion": "0.3.0"}},
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Codiv events",
            "version": f"{SCHEMA_VERSION}.0.0",
            "description": (
                "Events on Codiv's RabbitMQ topic exchange (routing key = event type). Internal "
                "producers publish post.requested onto the ingest exchange with the AMQP user_id "
                "property set to their RabbitMQ user; the gateway validates and authorises them."
            ),
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages},
    }


def write_asyncapi(path: Path, exchange: str = "codiv") -> None:
    """Write the document deterministically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(build_asyncapi(exchange), indent=2, sort_keys=True) + "\n")
