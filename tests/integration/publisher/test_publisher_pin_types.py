"""Each pin type reaches the emulator with exactly the fields sent; redelivery makes no twin."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from codiv_testsupport import free_port

pytestmark = pytest.mark.integration

VIDEO = b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 4000


@pytest.fixture
async def media_server() -> AsyncIterator[str]:
    async def video(_: web.Request) -> web.Response:
        return web.Response(body=VIDEO, content_type="video/mp4")

    async def not_video(_: web.Request) -> web.Response:
        return web.Response(body=b"<html>not a video</html>" * 10, content_type="video/mp4")

    async def missing(_: web.Request) -> web.Response:
        return web.Response(status=404)

    app = web.Application()
    app.router.add_get("/v.mp4", video)
    app.router.add_get("/broken.mp4", not_video)
    app.router.add_get("/missing.mp4", missing)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_each_pin_type_is_created_with_exactly_the_fields_sent(
    harness: Any, media_server: str
) -> None:
    h = await harness()
    acc = h.account
    image = h.content(board_section_id=acc.section_id)
    multi = h.content(
        media_urls=[f"https://images.example.com/{i}.jpg" for i in range(3)],
        description=None,
        alt_text=None,
    )
    video_frame = h.content(post_type="video", media_urls=[media_server + "/v.mp4"])
    video_cover = h.content(
        post_type="video",
        media_urls=[media_server + "/v.mp4"],
        cover_image_url="https://images.example.com/cover.jpg",
        cover_key_frame_time=None,
        link=None,
    )
    events = [h.due(c) for c in (image, multi, video_frame, video_cover)]
    await h.send(*events)
    ids = [e.payload.post_id for e in events]
    await h.wait_outcomes(ids, timeout=30)

    pins = {}
    for event in events:
        outcome = h.outcome(event.payload.post_id)
        assert outcome.type == "post.published", outcome
        assert outcome.payload.pin_url == f"https://www.pinterest.com/pin/{outcome.payload.pin_id}/"
        assert outcome.payload.board_id == acc.board_id
        assert len(h.of("post.publishing", event.payload.post_id)) == 1
        pins[event.payload.post_id] = await h.get_pin(outcome.payload.pin_id)

    for event in events:
        sent = event.payload.content
        pin = pins[event.payload.post_id]
        assert pin["board_id"] == sent.board_id
        assert pin.get("board_section_id") == sent.board_section_id
        for name in ("title", "description", "link", "alt_text"):
            assert pin.get(name) == getattr(sent, name), name

    assert pins[ids[0]]["media"]["media_type"] == "image"
    assert pins[ids[0]]["media"]["images"]["600x"]["url"] == image.media_urls[0]
    carousel = pins[ids[1]]["media"]
    assert carousel["media_type"] == "multiple_images"
    assert [i["images"]["600x"]["url"] for i in carousel["items"]] == multi.media_urls
    assert pins[ids[2]]["media"]["media_type"] == "video"
    # No cover URL given: the key frame (0 s) is used, Pinterest makes the thumbnail.
    assert "thumbnails" in pins[ids[2]]["media"]["cover_image_url"]
    assert pins[ids[3]]["media"]["cover_image_url"] == video_cover.cover_image_url
    stats = await h.stats()
    assert stats["media_uploads"] == 2
    assert sum(stats["pins_created"].values()) == 4

    # The same post.due delivered again (any attempt) changes nothing.
    await h.send(events[0], events[2])
    await asyncio.sleep(1.0)
    assert sum((await h.stats())["pins_created"].values()) == 4
    assert len(h.of("post.published")) == 4


async def test_video_failures_fail_with_a_clear_reason(harness: Any, media_server: str) -> None:
    h = await harness(video_max_bytes=2000)
    too_big = h.due(h.content(post_type="video", media_urls=[media_server + "/v.mp4"]))
    broken = h.due(h.content(post_type="video", media_urls=[media_server + "/broken.mp4"]))
    missing = h.due(h.content(post_type="video", media_urls=[media_server + "/missing.mp4"]))
    await h.send(too_big, broken, missing)
    ids = [e.payload.post_id for e in (too_big, broken, missing)]
    await h.wait_outcomes(ids, timeout=30)
    errors = {}
    for post_id in ids:
        outcome = h.outcome(post_id)
        assert outcome.type == "post.failed"
        errors[post_id] = outcome.payload.error
    assert errors[ids[0]].code == "video_too_large"
    assert "limit" in errors[ids[0]].message
    assert errors[ids[1]].code == "video_processing_failed"
    assert "Pinterest could not process the video" in errors[ids[1]].message
    assert errors[ids[2]].code == "video_download_failed"
    assert "404" in errors[ids[2]].message
    assert sum((await h.stats())["pins_created"].values()) == 0


async def test_processing_failure_reported_by_pinterest(harness: Any, media_server: str) -> None:
    h = await harness()
    await h.admin("PUT", "/media-processing", {"failure_share": 1.0, "seconds": 0.5})
    event = h.due(h.content(post_type="video", media_urls=[media_server + "/v.mp4"]))
    await h.send(event)
    await h.wait_outcomes([event.payload.post_id], timeout=20)
    outcome = h.outcome(event.payload.post_id)
    assert outcome.type == "post.failed"
    assert outcome.payload.error.code == "video_processing_failed"
    # It polled through post.retry (not by sleeping in the consumer), without a failure.
    assert all("processing the video" in r.payload.reason for r in h.of("post.retry"))
