"""Key rotation: old keys keep decrypting, rotate-token-keys moves every token to the newest
key while the service runs, and a wrong key fails loudly."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest
from codiv_auth.app import SCHEMA, SPEC
from codiv_auth.cli import RotationError, rotate_token_keys
from codiv_common.crypto import KeyRing
from codiv_common.db import migrate_dsn
from codiv_common.runtime import SHARED_MIGRATIONS
from pydantic import SecretStr

from .conftest import RunAuth, account_id_of, add_user

pytestmark = pytest.mark.integration

K1 = KeyRing.generate_key()
K2 = KeyRing.generate_key()


async def key_ids(db: asyncpg.Pool) -> set[str]:
    rows = await db.fetch(
        "SELECT token_key_id, access_token_enc, refresh_token_enc FROM auth.accounts"
    )
    found = set()
    for r in rows:
        ids = {
            KeyRing.key_id_of(bytes(r["access_token_enc"])),
            KeyRing.key_id_of(bytes(r["refresh_token_enc"])),
        }
        assert ids == {r["token_key_id"]}
        found |= ids
    return found


async def test_rotation_without_downtime_and_wrong_keys_fail_loudly(
    run_auth: RunAuth, db: asyncpg.Pool, database_url: str
) -> None:
    ring = lambda spec: SecretStr(spec)  # noqa: E731
    accounts = []
    async with run_auth(token_encryption_keys=ring(f"k1:{K1}")) as auth:
        for i in range(5):
            add_user(auth.emulator, f"rot{i}")
            accounts.append(
                account_id_of(await auth.connect(uuid.uuid4(), uuid.uuid4(), f"rot{i}"))
            )
        tokens = {a: (await auth.token(a))[1]["access_token"] for a in accounts}
    assert await key_ids(db) == {"k1"}

    # 1. a new key first, the old one still in the ring: everything still decrypts
    async with run_auth(
        token_encryption_keys=ring(f"k2:{K2},k1:{K1}"), invalidate_coalesce_seconds=0
    ) as auth:
        for a in accounts:
            status, body = await auth.token(a)
            assert status == 200
            assert body["access_token"] == tokens[a]
        # a refresh writes under the new key
        status, _ = await auth.token(accounts[0], invalidate=True)
        assert status == 200
        assert await key_ids(db) == {"k1", "k2"}

        # 2. rotate while the service runs
        lines: list[str] = []
        moved = await rotate_token_keys(
            database_url, KeyRing.parse(f"k2:{K2},k1:{K1}"), batch_size=2, out=lines.append
        )
        assert moved == 4
        assert lines[0].startswith("rotate-token-keys: 4 account(s)")
        assert any("re-encrypted 2/4" in line for line in lines)
        assert await key_ids(db) == {"k2"}
        # idempotent
        assert (
            await rotate_token_keys(
                database_url, KeyRing.parse(f"k2:{K2},k1:{K1}"), out=lines.append
            )
            == 0
        )
        for a in accounts:
            assert (await auth.token(a))[0] == 200

    # 3. the old key can go now
    async with run_auth(token_encryption_keys=ring(f"k2:{K2}")) as auth:
        for a in accounts[1:]:
            status, body = await auth.token(a)
            assert status == 200
            assert body["access_token"] == tokens[a]

    # 4. a wrong key under the right id, or a missing key id: loud failures, never silence
    wrong = KeyRing.generate_key()
    async with run_auth(token_encryption_keys=ring(f"k2:{wrong}")) as auth:
        status, body = await auth.token(accounts[1])
        assert (status, body["code"]) == (500, "token_decryption_failed")
    async with run_auth(token_encryption_keys=ring(f"k3:{wrong}")) as auth:
        status, body = await auth.token(accounts[1])
        assert (status, body["code"]) == (500, "token_decryption_failed")
    with pytest.raises(RotationError, match="does not decrypt"):
        await rotate_token_keys(
            database_url, KeyRing.parse(f"k3:{K1},k2:{wrong}"), out=lines.append
        )
    assert await key_ids(db) == {"k2"}  # the failed batch was rolled back


async def test_the_codiv_command_is_registered_and_reports_failures(database_url: str) -> None:
    codiv = Path(sys.executable).parent / "codiv"
    env = {**os.environ, "DATABASE_URL": database_url, "TOKEN_ENCRYPTION_KEYS": f"k1:{K1}"}
    help_text = subprocess.run([codiv, "--help"], capture_output=True, text=True, check=True).stdout
    assert "rotate-token-keys" in help_text
    # no schema yet: a clear failure, not a traceback
    result = subprocess.run([codiv, "rotate-token-keys"], env=env, capture_output=True, text=True)
    assert result.returncode == 1
    assert "FAILED: database error" in result.stderr
    assert "Traceback" not in result.stderr
    await migrate_dsn(database_url, SCHEMA, [SHARED_MIGRATIONS, SPEC.migrations])  # type: ignore[list-item]
    ok = subprocess.run([codiv, "rotate-token-keys"], env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "done, 0 re-encrypted" in ok.stdout
    missing = subprocess.run(
        [codiv, "rotate-token-keys"],
        env={**env, "TOKEN_ENCRYPTION_KEYS": ""},
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2
    assert "TOKEN_ENCRYPTION_KEYS is not set" in missing.stderr
