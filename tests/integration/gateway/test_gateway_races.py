"""Atomic quota under concurrency; idempotency keys under retries and concurrent retries."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime

import pytest
from codiv_gateway import domain

from .conftest import Gateway, post_body

pytestmark = pytest.mark.integration


async def test_quota_race_accepts_exactly_one(gw: Gateway) -> None:
    ws = await gw.workspace(plan="free")
    await gw.connected_profile(ws)
    async with gw.runtime.pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO usage (workspace_id, period, uploads) VALUES ($1, $2, 9)",
            ws.id,
            domain.month_start(datetime.now(UTC)),
        )
    results = await asyncio.gather(
        *(gw.call(ws, "POST", "/v1/posts", json=post_body(title=f"n{i}")) for i in range(20))
    )
    statuses = Counter(resp.status for resp, _ in results)
    assert statuses == {202: 1, 403: 19}, statuses
    refused = next(body for resp, body in results if resp.status == 403)
    assert refused["code"] == "plan_limit_reached"
    assert refused["limit"] == {"name": "uploads_per_month", "max": 10, "used": 10}
    assert refused["resets_at"] == domain.rfc3339(domain.next_month_start(datetime.now(UTC)))
    async with gw.runtime.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM posts") == 1
        assert await conn.fetchval("SELECT uploads FROM usage") == 10


async def test_pro_plan_has_no_upload_limit(gw: Gateway) -> None:
    ws = await gw.workspace(plan="pro")
    await gw.connected_profile(ws)
    async with gw.runtime.pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO usage (workspace_id, period, uploads) VALUES ($1, $2, 500)",
            ws.id,
            domain.month_start(datetime.now(UTC)),
        )
    resp, _ = await gw.call(ws, "POST", "/v1/posts", json=post_body())
    assert resp.status == 202


async def test_same_key_same_body_replays_different_body_refused(gw: Gateway) -> None:
    ws = await gw.workspace()
    await gw.connected_profile(ws)
    headers = {"Idempotency-Key": "order-42"}
    first, body1 = await gw.call(ws, "POST", "/v1/posts", json=post_body(), headers=headers)
    assert first.status == 202
    # same JSON value, other key order and spacing: the same request
    again, body2 = await gw.call(
        ws, "POST", "/v1/posts", json=dict(reversed(post_body().items())), headers=headers
    )
    assert again.status == 202
    assert again.headers["Idempotent-Replayed"] == "true"
    assert body2 == body1
    other, problem = await gw.call(
        ws, "POST", "/v1/posts", json=post_body(title="different"), headers=headers
    )
    assert (other.status, problem["code"]) == (422, "idempotency_key_reused")
    assert problem["errors"][0]["field"] == "Idempotency-Key"
    # a key is per workspace: another workspace may use it freely
    ws2 = await gw.workspace()
    await gw.connected_profile(ws2)
    resp, body3 = await gw.call(ws2, "POST", "/v1/posts", json=post_body(), headers=headers)
    assert resp.status == 202
    assert body3["id"] != body1["id"]
    resp, problem = await gw.call(
        ws, "POST", "/v1/posts", json=post_body(), headers={"Idempotency-Key": "bad key"}
    )
    assert (resp.status, problem["code"]) == (400, "invalid_idempotency_key")


async def test_failed_request_does_not_burn_the_key(gw: Gateway) -> None:
    ws = await gw.workspace()
    await gw.connected_profile(ws)
    headers = {"Idempotency-Key": "retry-me"}
    resp, _ = await gw.call(
        ws, "POST", "/v1/posts", json=post_body(pinterest_board_id="nope"), headers=headers
    )
    assert resp.status == 422
    # the corrected retry runs; the key now belongs to it
    resp, _body = await gw.call(ws, "POST", "/v1/posts", json=post_body(), headers=headers)
    assert resp.status == 202
    assert "Idempotent-Replayed" not in resp.headers


async def test_key_expires_after_24_hours(gw: Gateway) -> None:
    ws = await gw.workspace()
    await gw.connected_profile(ws)
    headers = {"Idempotency-Key": "old"}
    _, body1 = await gw.call(ws, "POST", "/v1/posts", json=post_body(), headers=headers)
    async with gw.runtime.pool.acquire() as conn:
        await conn.execute("UPDATE idempotency_keys SET created_at = now() - interval '25 hours'")
    resp, body2 = await gw.call(ws, "POST", "/v1/posts", json=post_body(title="x"), headers=headers)
    assert resp.status == 202
    assert body2["id"] != body1["id"]


async def test_concurrent_retries_create_one_post(gw: Gateway) -> None:
    ws = await gw.workspace(plan="free")
    await gw.connected_profile(ws)
    headers = {"Idempotency-Key": "storm"}
    results = await asyncio.gather(
        *(gw.call(ws, "POST", "/v1/posts", json=post_body(), headers=headers) for _ in range(12))
    )
    assert {resp.status for resp, _ in results} == {202}
    assert len({body["id"] for _, body in results}) == 1
    assert sum(resp.headers.get("Idempotent-Replayed") == "true" for resp, _ in results) == 11
    async with gw.runtime.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM posts") == 1
        assert await conn.fetchval("SELECT uploads FROM usage") == 1
        assert await conn.fetchval("SELECT count(*) FROM post_timeline") == 1
