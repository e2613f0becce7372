"""The framework's floor: a bare aiohttp endpoint that parses the JSON body and answers 202.

``python -m benchmarks.harness.bare --port N``: no database, no auth, no logging; the
same request and a response of the same shape as ``POST /v1/posts``.
"""

from __future__ import annotations

import argparse
import uuid

from aiohttp import web


async def create(request: web.Request) -> web.Response:
    body = await request.json()
    return web.json_response(
        {"id": str(uuid.uuid4()), "status": "scheduled", "title": body.get("title")}, status=202
    )


async def health(_: web.Request) -> web.Response:
    return web.json_response({"ok": True})


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.harness.bare")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application()
    app.router.add_post("/v1/posts", create)
    app.router.add_get("/healthz", health)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
