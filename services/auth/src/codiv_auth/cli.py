"""``codiv rotate-token-keys``: re-encrypt every stored token under the newest key."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from typing import TextIO

import asyncpg
from codiv_common.crypto import KeyRing
from codiv_common.db import check_schema_name

from .domain import TokenCipher, TokenDecryptionFailed
from .settings import ConfigError, Settings

SCHEMA = "auth"


class RotationError(Exception):
    """Rotation stopped: a token does not decrypt with the given key ring."""


async def rotate_token_keys(
    dsn: str,
    ring: KeyRing,
    *,
    schema: str = SCHEMA,
    batch_size: int = 100,
    locked_retry_for: float = 30.0,
    out: Callable[[str], None] = print,
) -> int:
    """Re-encrypt, batch by batch, every account whose tokens are not under the ring's
    first key; return how many were re-encrypted.

    Each batch is one transaction over rows claimed with ``FOR UPDATE SKIP LOCKED``: the
    services keep running (a row being refreshed is skipped and retried a moment later,
    and a refresh that commits meanwhile writes under its own current key). Running it
    again re-encrypts nothing (idempotent). A token that does not decrypt stops the run
    with :class:`RotationError` and rolls that batch back: nothing is ever skipped silently.
    """
    check_schema_name(schema)
    cipher = TokenCipher(ring)
    current = ring.current_key_id
    conn = await asyncpg.connect(dsn)
    try:
        total = await conn.fetchval(
            f"SELECT count(*) FROM {schema}.accounts WHERE token_key_id <> $1", current
        )
        out(f"rotate-token-keys: {total} account(s) to re-encrypt under key {current!r}")
        done = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + locked_retry_for
        while True:
            async with conn.transaction():
                rows = await conn.fetch(
                    f"SELECT id, access_token_enc, refresh_token_enc, token_key_id"
                    f" FROM {schema}.accounts WHERE token_key_id <> $1"
                    " ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED",
                    current,
                    batch_size,
                )
                updates = []
                for r in rows:
                    try:
                        access = cipher.decrypt(r["id"], r["access_token_enc"])
                        refresh = cipher.decrypt(r["id"], r["refresh_token_enc"])
                    except TokenDecryptionFailed as exc:
                        raise RotationError(
                            f"account {r['id']} (key {r['token_key_id']!r}): {exc}. Add the "
                            "key it was written under to TOKEN_ENCRYPTION_KEYS and run again."
                        ) from exc
                    updates.append(
                        (
                            r["id"],
                            cipher.encrypt(r["id"], access),
                            cipher.encrypt(r["id"], refresh),
                            current,
                        )
                    )
                if updates:
                    await conn.executemany(
                        f"UPDATE {schema}.accounts SET access_token_enc = $2,"
                        " refresh_token_enc = $3, token_key_id = $4 WHERE id = $1",
                        updates,
                    )
            if rows:
                done += len(rows)
                out(f"rotate-token-keys: re-encrypted {done}/{total}")
                continue
            remaining = await conn.fetchval(
                f"SELECT count(*) FROM {schema}.accounts WHERE token_key_id <> $1", current
            )
            if not remaining:
                break
            if loop.time() > deadline:
                raise RotationError(
                    f"{remaining} account(s) stayed locked for {locked_retry_for:.0f}s; run again"
                )
            await asyncio.sleep(0.2)  # rows locked by a refresh in flight: try again shortly
        out(f"rotate-token-keys: done, {done} re-encrypted, none left under other keys")
        return done
    finally:
        await conn.close()


def rotate_command(args: argparse.Namespace, *, stderr: TextIO = sys.stderr) -> int:
    """Entry of ``codiv rotate-token-keys``; settings come from the environment."""
    settings = Settings()
    keys = settings.token_encryption_keys
    if keys is None or not keys.get_secret_value().strip():
        print("rotate-token-keys: TOKEN_ENCRYPTION_KEYS is not set", file=stderr)
        return 2
    try:
        ring = KeyRing.parse(keys.get_secret_value())
    except ValueError as exc:
        print(f"rotate-token-keys: TOKEN_ENCRYPTION_KEYS is invalid: {exc}", file=stderr)
        return 2
    try:
        asyncio.run(
            rotate_token_keys(
                settings.database_url.get_secret_value(), ring, batch_size=args.batch_size
            )
        )
    except (RotationError, ConfigError) as exc:
        print(f"rotate-token-keys: FAILED: {exc}", file=stderr)
        return 1
    except (asyncpg.PostgresError, OSError) as exc:
        print(f"rotate-token-keys: FAILED: database error: {exc}", file=stderr)
        return 1
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Entry point ``codiv.commands``: adds ``rotate-token-keys``."""
    parser = subparsers.add_parser(
        "rotate-token-keys",
        help="auth: re-encrypt every Pinterest token under the first key of "
        "TOKEN_ENCRYPTION_KEYS (safe while services run)",
    )
    parser.add_argument("--batch-size", type=int, default=100, help="accounts per transaction")
    parser.set_defaults(func=rotate_command)
