"""POST /v1/posts:validate: rules plus a real media check; nothing created, no quota used."""

from __future__ import annotations

import struct
import zlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from .conftest import Gateway, GatewayFactory, post_body

pytestmark = pytest.mark.integration


def png(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = (
        struct.pack(">I", len(ihdr))
        + b"IHDR"
        + ihdr
        + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    )
    return b"\x89PNG\r\n\x1a\n" + chunk + b"\x00" * 100


MEDIA = {
    "/tall.png": (png(1000, 1500), "image/png"),
    "/small.png": (png(300, 300), "image/png"),
    "/page.html": (b"<html><body>hi</body></html>", "text/html"),
    "/clip.mp4": (b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64, "video/mp4"),
}


@pytest.fixture
async def media_server() -> AsyncIterator[str]:
    async def serve(request: web.Request) -> web.Response:
        found = MEDIA.get(request.path)
        if found is None:
            return web.Response(status=404)
        return web.Response(body=found[0], content_type=found[1])

    app = web.Application()
    app.router.add_get("/{name}", serve)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield f"http://127.0.0.1:{server.port}"
    await server.close()


async def _validate(gw: Gateway, ws: Any, **over: Any) -> dict[str, Any]:
    resp, body = await gw.call(ws, "POST", "/v1/posts:validate", json=post_body(**over))
    assert resp.status == 200, body
    return body


async def test_preflight_checks_media_and_creates_nothing(
    make_gateway: GatewayFactory, media_server: str
) -> None:
    gw = await make_gateway(allow_loopback_media=True)  # the media server is local
    ws = await gw.workspace(plan="free")
    await gw.connected_profile(ws)

    ok = await _validate(gw, ws, media_urls=[f"{media_server}/tall.png"])
    assert ok["valid"] is True, ok
    assert ok["errors"] == []
    assert ok["pinterest_board_name"] == "Living Rooms"
    assert [w["code"] for w in ok["warnings"]] == []

    small = await _validate(gw, ws, media_urls=[f"{media_server}/small.png"], pinterest_link=None)
    assert small["valid"] is True
    codes = {w["code"] for w in small["warnings"]}
    assert codes == {"aspect_ratio_not_2_3", "image_too_small", "missing_link"}

    bad = await _validate(
        gw,
        ws,
        media_urls=[f"{media_server}/missing.png", f"{media_server}/page.html"],
        pinterest_board_id="nope",
        title="t" * 101,
    )
    assert bad["valid"] is False
    assert [e["field"] for e in bad["errors"]] == ["title"]  # field rules first
    bad = await _validate(
        gw,
        ws,
        media_urls=[f"{media_server}/missing.png", f"{media_server}/page.html"],
        pinterest_board_id="nope",
    )
    fields = {e["field"]: e["message"] for e in bad["errors"]}
    assert "404" in fields["media_urls[0]"]
    assert "not a recognised image" in fields["media_urls[1]"]
    assert "pinterest_board_id" in fields

    video = await _validate(gw, ws, post_type="video", media_urls=[f"{media_server}/clip.mp4"])
    assert video["valid"] is True, video
    wrong = await _validate(gw, ws, post_type="video", media_urls=[f"{media_server}/tall.png"])
    assert wrong["errors"][0]["field"] == "media_urls[0]"

    # nothing created, no upload counted
    _, listing = await gw.call(ws, "GET", "/v1/posts")
    assert listing["data"] == []
    async with gw.runtime.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM usage") == 0


async def test_preflight_refuses_private_addresses_without_fetching(gw: Gateway) -> None:
    ws = await gw.workspace()
    await gw.connected_profile(ws)
    body = await _validate(gw, ws, media_urls=["http://169.254.169.254/latest/meta-data/"])
    assert body["valid"] is False
    assert body["errors"][0]["field"] == "media_urls[0]"
    assert "metadata" in body["errors"][0]["message"]
