"""An external producer: publishes post.requested events onto Codiv's ingest exchange.

Used by the end-to-end test as a separate process that knows nothing of the gateway.
Prints one JSON line per event: its post id and whether it was meant to be valid.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid

import aio_pika
from codiv_common.events import encode_event
from codiv_common.producer import build_post_requested, publish_submission, request_post


async def main(args: argparse.Namespace) -> None:
    connection = await aio_pika.connect_robust(args.amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        base = {"profile_name": args.profile, "pinterest_board_id": args.board}
        for i in range(args.valid):
            post_id = await request_post(
                channel,
                workspace_id=args.workspace,
                producer=args.producer,
                exchange=args.exchange,
                title=f"producer post {i}",
                description=f"from the orders service, item {i}",
                media_urls=[f"https://cdn.example.com/item{i}.jpg"],
                **base,
            )
            print(json.dumps({"post_id": str(post_id), "valid": True}), flush=True)
        invalid = [
            {"title": "x" * 101, "media_urls": ["https://cdn.example.com/a.jpg"], **base},
            {"media_urls": ["http://10.0.0.7/private.jpg"], **base},
            {
                "media_urls": ["https://cdn.example.com/a.jpg"],
                "profile_name": args.profile,
                "pinterest_board_id": "No such board",
            },
            {
                "media_urls": ["https://cdn.example.com/a.jpg"],
                "profile_name": "no-such-profile",
                "pinterest_board_id": args.board,
            },
            {
                "post_type": "video",
                "media_urls": ["https://cdn.example.com/a.mp4", "https://cdn.example.com/b.mp4"],
                **base,
            },
        ][: args.invalid]
        for fields in invalid:
            event = build_post_requested(
                workspace_id=args.workspace, producer=args.producer, **fields
            )
            await publish_submission(channel, event, exchange=args.exchange)
            print(json.dumps({"post_id": str(event.payload.post_id), "valid": False}), flush=True)
        if args.evolution:
            # a v1 event with an unknown extra field, and one of an older minor shape
            # (no platforms, no post_type): both must be processed
            newer = build_post_requested(
                workspace_id=args.workspace,
                producer=args.producer,
                media_urls=["https://cdn.example.com/new.jpg"],
                description="newer shape",
                **base,
            )
            body = json.loads(encode_event(newer))
            body["payload"]["added_in_v1_9"] = {"anything": True}
            body["shiny_new_envelope_field"] = 1
            older_id = uuid.uuid4()
            older = {
                "event_id": str(uuid.uuid4()),
                "type": "post.requested",
                "version": 1,
                "occurred_at": "2026-01-01T00:00:00Z",
                "workspace_id": args.workspace,
                "payload": {
                    "post_id": str(older_id),
                    "profile_name": args.profile,
                    "media_urls": ["https://cdn.example.com/old.jpg"],
                    "pinterest_board_id": args.board,
                    "description": "older shape",
                },
            }
            exchange = await channel.get_exchange(args.exchange + ".ingest", ensure=False)
            for raw, pid in ((body, newer.payload.post_id), (older, older_id)):
                await exchange.publish(
                    aio_pika.Message(
                        json.dumps(raw).encode(),
                        user_id=args.producer,
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        message_id=raw["event_id"],
                    ),
                    routing_key="post.requested",
                    mandatory=True,
                )
                print(json.dumps({"post_id": str(pid), "valid": True}), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--amqp-url", required=True)
    parser.add_argument("--exchange", required=True)
    parser.add_argument("--workspace", required=True)
    parser.add_argument("--producer", default="guest")
    parser.add_argument("--profile", required=True)
    parser.add_argument("--board", required=True)
    parser.add_argument("--valid", type=int, default=0)
    parser.add_argument("--invalid", type=int, default=0)
    parser.add_argument("--evolution", action="store_true")
    asyncio.run(main(parser.parse_args()))
