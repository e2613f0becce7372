"""Internal producers publish post.requested straight onto the broker (no HTTP API)."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections import Counter
from pathlib import Path

import aio_pika
import aiohttp
import pytest
from codiv_common.producer import build_post_requested, publish_submission
from codiv_devtools.system import Client, System, SystemConfig
from codiv_testsupport import wait_until

pytestmark = pytest.mark.e2e
SCRIPT = Path(__file__).parent / "scripts" / "external_producer.py"


async def _run_producer(config: SystemConfig, workspace: str, *extra: str) -> list[dict]:  # type: ignore[type-arg]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SCRIPT),
        "--amqp-url",
        config.amqp_url,
        "--exchange",
        config.exchange,
        "--workspace",
        workspace,
        "--profile",
        "shop",
        "--board",
        "Recipes",
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()[-3000:]
    return [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]


async def test_external_producer_posts_are_published_once_and_visible(
    system_config: SystemConfig,
) -> None:
    async with aiohttp.ClientSession() as session:
        system = System(system_config)
        client = Client(system, session)
        allowed = await client.create_workspace("producers-allowed", plan="pro")
        other = await client.create_workspace("producers-other", plan="pro")
        system_config.extra_env.update(
            {
                "INGEST_PRODUCERS": json.dumps({"guest": [allowed["workspace_id"]]}),
                "WRITES_PER_MINUTE": "6000",
                "RATE_LIMIT_PRO": "100000",
            }
        )
        system = System(system_config)
        client = Client(system, session)
        try:
            await system.start()
            await client.emulator(
                "PUT", "/rate-limits", {"per_user": {"org_write": 100000, "org_read": 100000}}
            )
            key = allowed["api_key"]
            await client.connect_profile(key, "shop")
            sent = await _run_producer(
                system_config,
                allowed["workspace_id"],
                "--valid",
                "100",
                "--invalid",
                "5",
                "--evolution",
            )
            valid = [s["post_id"] for s in sent if s["valid"]]
            invalid = [s["post_id"] for s in sent if not s["valid"]]
            assert (len(valid), len(invalid)) == (102, 5)

            # unauthorised: the allowed producer naming another workspace, and no user_id
            connection = await aio_pika.connect(system_config.amqp_url)
            async with connection:
                channel = await connection.channel(publisher_confirms=True)
                foreign = build_post_requested(
                    workspace_id=other["workspace_id"],
                    producer="guest",
                    profile_name="shop",
                    media_urls=["https://cdn.example.com/x.jpg"],
                    pinterest_board_id="Recipes",
                )
                await publish_submission(channel, foreign, exchange=system_config.exchange)
                anonymous = build_post_requested(
                    workspace_id=allowed["workspace_id"],
                    producer="guest",
                    profile_name="shop",
                    media_urls=["https://cdn.example.com/y.jpg"],
                    pinterest_board_id="Recipes",
                )
                ingest = await channel.get_exchange(system_config.exchange + ".ingest")
                await ingest.publish(
                    aio_pika.Message(
                        json.dumps(json.loads(anonymous.model_dump_json())).encode()
                    ),  # no user_id property
                    routing_key="post.requested",
                )
                # RabbitMQ itself refuses a user_id that is not the connection's user
                spoof_channel = await connection.channel(publisher_confirms=True)
                spoof = aio_pika.Message(b"{}", user_id="orders-service")
                spoof_exchange = await spoof_channel.get_exchange(
                    system_config.exchange + ".ingest"
                )
                with pytest.raises(aio_pika.exceptions.AMQPError):
                    await spoof_exchange.publish(spoof, routing_key="post.requested", timeout=5)

            async def all_final() -> dict | None:  # type: ignore[type-arg]
                export = await client.api("GET", "/v1/posts/export?format=json", key)
                rows = export if isinstance(export, list) else export.get("data", [])
                found = {p["id"]: p for p in rows}
                wanted = valid + invalid
                done = all(
                    pid in found and found[pid]["status"] in ("published", "failed")
                    for pid in wanted
                )
                return found if done else None

            by_id = await wait_until(all_final, timeout=120, interval=1.0)
            assert all(by_id[v]["status"] == "published" for v in valid), [
                by_id[v] for v in valid if by_id[v]["status"] != "published"
            ][:3]
            for pid in invalid:
                post = by_id[pid]
                assert post["status"] == "failed"
                assert post["error"]["message"], post
            codes = Counter(by_id[pid]["error"]["code"] for pid in invalid)
            assert codes["validation_error"] >= 2, codes

            # exactly once on Pinterest
            pins = await client.emulator("GET", "/pins")
            titles = Counter(p.get("title") for p in pins["items"])
            assert all(titles[f"producer post {i}"] == 1 for i in range(100)), titles
            assert len(pins["items"]) == 102

            # visible through the HTTP API like any other post
            listed = await client.api("GET", "/v1/posts?limit=100", key)
            assert len(listed["data"]) == 100
            assert listed["has_more"] is True

            # the unauthorised events changed nothing: workspace B has no post, and the
            # allowed workspace has exactly the 107 submitted
            other_posts = await client.api("GET", "/v1/posts", other["api_key"])
            assert other_posts["data"] == []
            assert len(by_id) == 107
            async with session.get(f"{system.gateway_url}/asyncapi.json") as resp:
                doc = await resp.json()
            channel_ = doc["channels"]["ingest_post_requested"]
            exchange_name = channel_["bindings"]["amqp"]["exchange"]["name"]
            assert exchange_name == system_config.exchange + ".ingest"
            dead = await _dead_letters(system_config)
            assert len(dead) == 2, dead
            assert all("may not post" in r for r in dead), dead
        finally:
            system.stop()


async def _dead_letters(config: SystemConfig) -> list[str]:
    connection = await aio_pika.connect(config.amqp_url)
    reasons: list[str] = []
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(f"{config.queue_prefix}gateway.ingest.dead")
        while (m := await queue.get(fail=False, no_ack=True)) is not None:
            reasons.append(str((m.headers or {}).get("x-codiv-dead-reason")))
    return reasons


def test_the_example_builds_a_valid_envelope() -> None:
    event = build_post_requested(
        workspace_id=uuid.uuid4(),
        producer="orders-service",
        profile_name="shop-account",
        media_urls=["https://cdn.example.com/room.jpg"],
        pinterest_board_id="Living room",
    )
    body = json.loads(event.model_dump_json())
    assert body["type"] == "post.requested"
    assert body["payload"]["post_id"] == str(event.payload.post_id)
    assert body["payload"]["platforms"] == ["pinterest"]
