"""Authentication, tenant isolation, rate limiting across replicas, the admin CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from .conftest import Gateway, GatewayFactory, post_body

pytestmark = pytest.mark.integration

CODIV = str(Path(sys.executable).parent / "codiv")


async def test_missing_malformed_revoked_unknown_keys_get_the_same_401(gw: Gateway) -> None:
    ws = await gw.workspace()
    unknown = "cdv_live_" + "A" * 40
    variants: list[dict[str, str]] = [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer cdv_live_short"},
        {"Authorization": f"Bearer {unknown}"},
    ]
    bodies = []
    for headers in variants:
        resp, body = await gw.call(None, "GET", "/v1/profiles", headers=headers)
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        bodies.append(body)
    async with gw.runtime.pool.acquire() as conn:
        await conn.execute("UPDATE api_keys SET revoked_at = now() WHERE workspace_id = $1", ws.id)
    resp, body = await gw.call(ws, "GET", "/v1/profiles")
    assert resp.status == 401
    bodies.append(body)
    assert all(b == bodies[0] for b in bodies)
    assert bodies[0]["code"] == "unauthorized"


async def test_workspace_a_never_sees_workspace_b(gw: Gateway) -> None:
    a, b = await gw.workspace(), await gw.workspace()
    await gw.connected_profile(b, name="b-shop")
    resp, post = await gw.call(b, "POST", "/v1/posts", json=post_body(profile_name="b-shop"))
    assert resp.status == 202
    pid = post["id"]
    probes = [
        ("GET", "/v1/profiles/b-shop", None),
        ("DELETE", "/v1/profiles/b-shop", None),
        ("POST", "/v1/profiles/b-shop/connections/pinterest", None),
        ("DELETE", "/v1/profiles/b-shop/connections/pinterest", None),
        ("POST", "/v1/profiles/b-shop/boards:sync", None),
        ("GET", "/v1/profiles/b-shop/boards", None),
        ("GET", f"/v1/posts/{pid}", None),
        ("PATCH", f"/v1/posts/{pid}", {"title": "mine now"}),
        ("DELETE", f"/v1/posts/{pid}", None),
        ("POST", "/v1/posts", post_body(profile_name="b-shop")),
    ]
    for method, path, body in probes:
        resp, answer = await gw.call(a, method, path, json=body)
        assert resp.status == 404, (method, path, answer)
        assert answer["code"] == "not_found"
        # the problem echoes what was asked, never anything of B's (boards, account, post)
        assert set(answer) == {"type", "title", "status", "code", "detail", "errors"}
        assert "Living Rooms" not in json.dumps(answer)
    for path in ("/v1/posts", "/v1/profiles", "/v1/posts/export?format=json"):
        resp, answer = await gw.call(a, "GET", path)
        assert resp.status == 200
        assert pid not in json.dumps(answer), path
        assert "b-shop" not in json.dumps(answer), path
    resp, answer = await gw.call(
        a, "POST", "/v1/posts:validate", json=post_body(profile_name="b-shop")
    )
    assert answer["valid"] is False
    # B is untouched
    resp, still = await gw.call(b, "GET", f"/v1/posts/{pid}")
    assert still["status"] == "scheduled"
    assert still["title"] is None


async def test_rate_limit_is_shared_by_replicas(make_gateway: GatewayFactory) -> None:
    one = await make_gateway(rate_limit_pro=5)
    two = await make_gateway(rate_limit_pro=5)  # another replica on the same database
    ws = await one.workspace()
    remaining = []
    for i in range(5):
        resp, _ = await (one if i % 2 else two).call(ws, "GET", "/v1/profiles")
        assert resp.status == 200
        remaining.append(int(resp.headers["RateLimit-Remaining"]))
        assert resp.headers["RateLimit-Limit"] == "5"
        assert resp.headers["RateLimit-Policy"] == "5;w=60"
    assert remaining == [4, 3, 2, 1, 0]
    resp, body = await two.call(ws, "GET", "/v1/profiles")
    assert resp.status == 429
    assert body["code"] == "rate_limited"
    assert 1 <= int(resp.headers["Retry-After"]) <= 60
    assert resp.headers["RateLimit-Remaining"] == "0"
    # another key has its own allowance
    other = await one.workspace()
    resp, _ = await one.call(other, "GET", "/v1/profiles")
    assert resp.status == 200


async def test_free_plan_allows_two_profiles(gw: Gateway) -> None:
    ws = await gw.workspace(plan="free")
    for name in ("one", "two"):
        resp, _ = await gw.call(ws, "POST", "/v1/profiles", json={"name": name})
        assert resp.status == 201
    resp, body = await gw.call(ws, "POST", "/v1/profiles", json={"name": "three"})
    assert (resp.status, body["code"]) == (403, "plan_limit_reached")
    assert body["limit"]["name"] == "profiles"
    assert body["limit"]["max"] == 2
    resp, body = await gw.call(ws, "POST", "/v1/profiles", json={"name": "one"})
    resp, _ = await gw.call(ws, "DELETE", "/v1/profiles/two")
    assert resp.status == 200
    resp, body = await gw.call(ws, "POST", "/v1/profiles", json={"name": "one"})
    assert (resp.status, body["code"]) == (409, "profile_exists")
    resp, body = await gw.call(ws, "POST", "/v1/profiles", json={"name": "bad name!"})
    assert (resp.status, body["errors"][0]["field"]) == (422, "name")


def _cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CODIV, "admin", *args],
        env={**os.environ, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_admin_cli_creates_and_revokes_keys(gw: Gateway, database_url: str) -> None:
    out = _cli(database_url, "create-workspace", "--name", "acme", "--plan", "free", "--json")
    assert out.returncode == 0, out.stderr
    created = json.loads(out.stdout)
    key = created["api_key"]
    assert key.startswith("cdv_live_")
    assert created["api_key_prefix"] == key[:15]
    async with gw.runtime.pool.acquire() as conn:
        stored = await conn.fetch("SELECT key_hash, prefix FROM api_keys")
    assert key not in json.dumps([dict(r) for r in stored])  # only the hash is stored
    headers = {"Authorization": f"Bearer {key}"}
    resp, _ = await gw.call(None, "GET", "/v1/profiles", headers=headers)
    assert resp.status == 200

    out = _cli(database_url, "create-api-key", "--workspace", "acme", "--json")
    second = json.loads(out.stdout)["api_key"]
    out = _cli(database_url, "revoke-api-key", created["api_key_prefix"])
    assert out.returncode == 0, out.stderr
    resp, _ = await gw.call(None, "GET", "/v1/profiles", headers=headers)
    assert resp.status == 401
    resp, _ = await gw.call(
        None, "GET", "/v1/profiles", headers={"Authorization": f"Bearer {second}"}
    )
    assert resp.status == 200
    out = _cli(database_url, "revoke-api-key", str(uuid.uuid4()))
    assert out.returncode == 1
    assert "no active API key" in out.stderr


async def test_unknown_route_and_method_are_problems(gw: Gateway) -> None:
    ws = await gw.workspace()
    resp, body = await gw.call(ws, "GET", "/v1/nothing")
    assert (resp.status, body["code"]) == (404, "not_found")
    resp, body = await gw.call(ws, "PUT", "/v1/posts")
    assert (resp.status, body["code"]) == (405, "method_not_allowed")
    assert "RateLimit-Remaining" in resp.headers


async def test_openapi_and_docs(gw: Gateway) -> None:
    resp, spec = await gw.call(None, "GET", "/openapi.json")
    assert resp.status == 200
    assert spec["openapi"].startswith("3.1")
    post = spec["paths"]["/v1/posts"]["post"]
    ref = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema: Any = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["title"]["anyOf"][0]["maxLength"] == 100
    from openapi_spec_validator import validate

    validate(spec)
    resp, page = await gw.call(None, "GET", "/docs")
    assert resp.status == 200
    assert "POST" in page
    assert "/v1/posts:validate" in page
