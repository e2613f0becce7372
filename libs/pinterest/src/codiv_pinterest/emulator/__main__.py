"""Command line: ``codiv-pinterest-emulator --host 127.0.0.1 --port 8099 [--seed FILE]``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from aiohttp import web

from codiv_pinterest.emulator.app import create_app
from codiv_pinterest.emulator.config import EmulatorConfig, load_seed


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="codiv-pinterest-emulator", description="Run the Pinterest API v5 emulator."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--seed", help="seed JSON file: users, boards, apps, tokens")
    parser.add_argument("--config", help="full EmulatorConfig JSON file (seed inside)")
    parser.add_argument("--public-url", help="base URL clients use to reach this emulator")
    parser.add_argument("--media-processing-seconds", type=float)
    parser.add_argument("--random-seed", type=int)
    args = parser.parse_args(argv)

    if args.config:
        with open(args.config, encoding="utf-8") as fh:
            config = EmulatorConfig.model_validate_json(fh.read())
    else:
        config = EmulatorConfig()
    updates: dict[str, object] = {}
    if args.seed:
        updates["seed"] = load_seed(args.seed)
    if args.public_url:
        updates["public_url"] = args.public_url
    if args.random_seed is not None:
        updates["random_seed"] = args.random_seed
    if args.media_processing_seconds is not None:
        updates["media"] = config.media.model_copy(
            update={"seconds": args.media_processing_seconds}
        )
    config = config.model_copy(update=updates)

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    web.run_app(
        create_app(config),
        host=args.host,
        port=args.port,
        print=lambda msg: print(msg, flush=True),
        access_log=None,
    )


if __name__ == "__main__":
    main()
