"""Publish posts onto Codiv from another service, without the HTTP API.

Example (runnable: ``python -m codiv_common.producer --help``)::

    connection = await aio_pika.connect_robust("amqp://orders-service:secret@rabbit/")
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    post_id = await request_post(
        channel,
        workspace_id=WORKSPACE_ID,
        producer="orders-service",            # must be the RabbitMQ user of the connection
        profile_name="shop-account",
        media_urls=["https://cdn.example.com/room.jpg"],
        pinterest_board_id="Living room",
        description="New in store",
    )

The broker checks ``user_id`` against the connection's user, so a producer cannot
pretend to be another; the gateway accepts the event only if that user is allowed for
the workspace (``INGEST_PRODUCERS``). The outcome arrives as ``post.published`` or
``post.failed`` with the same ``post_id``, and the post is visible in ``GET /v1/posts``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel

from .broker import INGEST_SUFFIX
from .events import PostSubmission, ProducerPostRequestedEvent, encode_event


def build_post_requested(
    *, workspace_id: uuid.UUID | str, producer: str, post_id: uuid.UUID | None = None, **fields: Any
) -> ProducerPostRequestedEvent:
    """A valid producer envelope for the post described by ``fields`` (public API names)."""
    submission = PostSubmission(post_id=post_id or uuid.uuid4(), **fields)
    return ProducerPostRequestedEvent(
        workspace_id=uuid.UUID(str(workspace_id)),
        producer=producer,
        correlation_id=submission.post_id,
        payload=submission,
    )


async def publish_submission(
    channel: AbstractChannel,
    event: ProducerPostRequestedEvent,
    *,
    exchange: str = "codiv",
    timeout: float = 10.0,
) -> None:
    """Publish a producer envelope persistently with a confirm; raise if unroutable."""
    target = await channel.get_exchange(exchange + INGEST_SUFFIX, ensure=False)
    await target.publish(
        aio_pika.Message(
            encode_event(event),
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=str(event.event_id),
            user_id=event.producer,
            type=event.type,
        ),
        routing_key=event.type,
        mandatory=True,
        timeout=timeout,
    )


async def request_post(
    channel: AbstractChannel,
    *,
    workspace_id: uuid.UUID | str,
    producer: str,
    exchange: str = "codiv",
    post_id: uuid.UUID | None = None,
    **fields: Any,
) -> uuid.UUID:
    """Ask Codiv to publish a post; returns its id once the broker confirmed the event.

    ``channel`` must have publisher confirms on. ``fields`` are the public API's post
    fields (``profile_name``, ``post_type``, ``media_urls``, ``pinterest_board_id``, ...).
    """
    event = build_post_requested(
        workspace_id=workspace_id, producer=producer, post_id=post_id, **fields
    )
    await publish_submission(channel, event, exchange=exchange)
    return event.payload.post_id


async def _main(args: argparse.Namespace) -> None:
    connection = await aio_pika.connect_robust(args.amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        post_id = await request_post(
            channel,
            workspace_id=args.workspace,
            producer=args.producer,
            exchange=args.exchange,
            **json.loads(args.fields),
        )
        print(post_id)


def main() -> None:
    parser = argparse.ArgumentParser(description="Publish one post.requested onto Codiv")
    parser.add_argument("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument("--exchange", default="codiv")
    parser.add_argument("--workspace", required=True)
    parser.add_argument("--producer", required=True, help="your RabbitMQ user name")
    parser.add_argument(
        "--fields",
        required=True,
        help='JSON of post fields, e.g. {"profile_name": "shop-account", "media_urls": [...],'
        ' "pinterest_board_id": "Living room"}',
    )
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
