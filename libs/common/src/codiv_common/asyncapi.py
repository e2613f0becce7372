"""AsyncAPI 3 document of the events, generated from the same pydantic models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .events import EVENT_TYPES, SCHEMA_VERSION

# Events an internal producer may publish (onto the ingest exchange), and the ones it may
# subscribe to for outcomes. Everything else is internal to Codiv.
PRODUCER_PUBLISHES = ("post.requested",)
PRODUCER_SUBSCRIBES = ("post.published", "post.failed")
INGEST_EXCHANGE_SUFFIX = ".ingest"


def build_asyncapi(exchange: str = "codiv") -> dict[str, Any]:
    """The AsyncAPI 3.0 document: channels per routing key, envelope schemas per message."""
    schemas: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for routing_key, cls in sorted(EVENT_TYPES.items()):
        name = routing_key.replace(".", "_")
        schema = cls.model_json_schema(ref_template="#/components/schemas/{model}")
        for def_name, definition in schema.pop("$defs", {}).items():
            schemas[def_name] = definition
        schemas[cls.__name__] = schema
        messages[name] = {
            "name": routing_key,
            "title": cls.__name__,
            "contentType": "application/json",
            "payload": {"$ref": f"#/components/schemas/{cls.__name__}"},
            "correlationId": {"location": "$message.payload#/correlation_id"},
        }
        ingest = routing_key in PRODUCER_PUBLISHES
        channels[name] = {
            "address": routing_key,
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
            "bindings": {
                "amqp": {
                    "is": "routingKey",
                    "exchange": {
                        "name": exchange + (INGEST_EXCHANGE_SUFFIX if ingest else ""),
                        "type": "topic",
                        "durable": True,
                        "autoDelete": False,
                        "vhost": "/",
                    },
                    "bindingVersion": "0.3.0",
                }
            },
        }
        if ingest:
            operations[f"publish_{name}"] = {
                "action": "send",
                "channel": {"$ref": f"#/channels/{name}"},
                "summary": f"An internal producer publishes {routing_key} onto {exchange}.ingest",
                "bindings": {"amqp": {"deliveryMode": 2, "userId": "", "bindingVersion": "0.3.0"}},
            }
        if routing_key in PRODUCER_SUBSCRIBES:
            operations[f"receive_{name}"] = {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{name}"},
                "summary": f"Outcome of a post: bind your own queue to {routing_key}",
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
