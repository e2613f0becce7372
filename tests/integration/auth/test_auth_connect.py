"""OAuth connect through the emulator: state checks, storage, boards, events, no plaintext."""

from __future__ import annotations

import time
import uuid

import asyncpg
import pytest
from codiv_common import signed
from codiv_common.logging import configure_logging

from .conftest import (
    SCOPES,
    SUCCESS_URL,
    Auth,
    Probe,
    RunAuth,
    account_id_of,
    add_user,
    issued_tokens,
    live_refresh_token,
)

pytestmark = pytest.mark.integration


async def scan_for_secrets(db: asyncpg.Pool, secrets: list[str]) -> list[str]:
    """Every (schema.table.column) of any text, json or bytea column holding a secret."""
    columns = await db.fetch(
        "SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns"
        " WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
        " AND data_type IN ('text', 'character varying', 'bytea', 'json', 'jsonb', 'character')"
    )
    assert any(c["column_name"] == "refresh_token_enc" for c in columns)
    found = []
    for c in columns:
        expr = f'"{c["column_name"]}"'
        expr = f"encode({expr}, 'escape')" if c["data_type"] == "bytea" else f"{expr}::text"
        rows = await db.fetch(f'SELECT {expr} AS v FROM "{c["table_schema"]}"."{c["table_name"]}"')
        for r in rows:
            value = r["v"] or ""
            for secret in secrets:
                if secret in value:
                    found.append(f"{c['table_schema']}.{c['table_name']}.{c['column_name']}")
    return found


async def test_connect_stores_encrypted_tokens_syncs_boards_and_emits(
    run_auth: RunAuth, probe: Probe, db: asyncpg.Pool, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("INFO", "json")
    ws, profile = uuid.uuid4(), uuid.uuid4()
    async with run_auth() as auth:
        user_id = add_user(
            auth.emulator, "brand", boards=3, sections={"Recipes": ["Salads", "Desserts"]}
        )
        resp = await auth.connect(ws, profile, "brand", name="Brand & Co")
        assert resp.status == 302
        location = resp.headers["Location"]
        assert location.startswith(SUCCESS_URL + "?")
        assert "profile_name=Brand+%26+Co" in location
        assert "boards=synced" in location
        account_id = account_id_of(resp)
        uuid.UUID(account_id)

        connected = await probe.wait_for("account.connected")
        assert connected[0].workspace_id == ws
        assert connected[0].payload.account_id == account_id
        assert connected[0].payload.profile_id == profile
        assert connected[0].payload.pinterest_user_id == user_id
        assert connected[0].payload.username == "brand"
        assert connected[0].payload.reconnected is False
        synced = (await probe.wait_for("account.boards_synced"))[0]
        assert synced.payload.account_id == account_id
        assert len(synced.payload.boards) == 4
        recipes = next(bd for bd in synced.payload.boards if bd.name == "Recipes")
        assert sorted(s.name for s in recipes.sections) == ["Desserts", "Salads"]

        row = await db.fetchrow("SELECT * FROM auth.accounts WHERE id = $1", uuid.UUID(account_id))
        assert row["status"] == "active"
        assert row["profile_id"] == profile
        assert row["token_key_id"] == "k1"
        assert row["scopes"] == ",".join(sorted(auth.settings.scopes))

        # The token the publisher gets is the one Pinterest issued and it works.
        status, body = await auth.token(account_id)
        assert status == 200, body
        assert body["access_token"].startswith("pina_")
        assert body["expires_at"].endswith("Z")
        async with auth.http.get(
            auth.emulator.api_base_url + "/user_account",
            headers={"Authorization": f"Bearer {body['access_token']}"},
        ) as r:
            assert r.status == 200
            assert (await r.json())["id"] == user_id

        # No plaintext token anywhere in the database, nor in the logs.
        tokens = issued_tokens(auth.emulator)
        assert len(tokens) == 2
        assert await scan_for_secrets(db, tokens) == []
    logs = capsys.readouterr()
    text = logs.out + logs.err
    assert "account_connected" in text
    for token in tokens:
        assert token not in text


async def test_a_user_with_600_boards_gets_all_of_them(run_auth: RunAuth, probe: Probe) -> None:
    async with run_auth() as auth:
        add_user(auth.emulator, "big", boards=598, sections={"A": ["s1"], "B": ["s2", "s3"]})
        started = time.monotonic()
        account_id = account_id_of(await auth.connect(uuid.uuid4(), uuid.uuid4(), "big"))
        elapsed = time.monotonic() - started
        synced = (await probe.wait_for("account.boards_synced"))[0]
        assert synced.payload.account_id == account_id
        ids = [bd.id for bd in synced.payload.boards]
        assert len(ids) == len(set(ids)) == 600
        assert sum(len(bd.sections) for bd in synced.payload.boards) == 3
        print(f"connect with 600 boards took {elapsed:.2f}s")


async def test_reconnecting_the_same_user_updates_tokens_in_place(
    run_auth: RunAuth, probe: Probe, db: asyncpg.Pool
) -> None:
    ws, profile = uuid.uuid4(), uuid.uuid4()
    async with run_auth(invalidate_coalesce_seconds=0) as auth:
        user_id = add_user(auth.emulator, "again")
        first = account_id_of(await auth.connect(ws, profile, "again"))
        old_refresh = live_refresh_token(auth.emulator, user_id)
        second = account_id_of(await auth.connect(ws, profile, "again"))
        assert first == second
        assert await db.fetchval("SELECT count(*) FROM auth.accounts") == 1
        events = await probe.wait_for("account.connected", count=2)
        assert [e.payload.reconnected for e in events] == [False, True]
        # the newest refresh token is the one kept: refreshing uses it successfully
        newest = [
            t.value
            for t in auth.emulator.state.tokens.values()
            if t.kind == "refresh" and t.user_id == user_id and t.value != old_refresh
        ]
        assert len(newest) == 1
        auth.emulator.state.revoke(token=old_refresh)
        status, body = await auth.token(first, invalidate=True)
        assert status == 200, body
        gen = await db.fetchval(
            "SELECT token_generation FROM auth.accounts WHERE id = $1", uuid.UUID(first)
        )
        assert gen == 3  # connect, reconnect, refresh


async def test_the_same_user_on_another_profile_is_refused_and_nothing_changes(
    run_auth: RunAuth, probe: Probe, db: asyncpg.Pool
) -> None:
    ws = uuid.uuid4()
    async with run_auth() as auth:
        add_user(auth.emulator, "shared")
        account_id_of(await auth.connect(ws, uuid.uuid4(), "shared", name="first"))
        before = await db.fetchrow("SELECT * FROM auth.accounts")
        resp = await auth.connect(ws, uuid.uuid4(), "shared", name="second")
        assert resp.status == 409
        after = await db.fetchrow("SELECT * FROM auth.accounts")
        assert dict(before) == dict(after)
        # In another workspace the same Pinterest user is a separate account.
        account_id_of(await auth.connect(uuid.uuid4(), uuid.uuid4(), "shared"))
        assert await db.fetchval("SELECT count(*) FROM auth.accounts") == 2


async def test_connecting_another_user_to_a_profile_replaces_its_account(
    run_auth: RunAuth, probe: Probe, db: asyncpg.Pool
) -> None:
    ws, profile = uuid.uuid4(), uuid.uuid4()
    async with run_auth() as auth:
        add_user(auth.emulator, "old")
        add_user(auth.emulator, "new")
        old = account_id_of(await auth.connect(ws, profile, "old"))
        new = account_id_of(await auth.connect(ws, profile, "new"))
        assert old != new
        gone = await probe.wait_for("account.disconnected")
        assert gone[0].payload.account_id == old
        assert gone[0].payload.profile_id == profile
        assert [str(r["id"]) for r in await db.fetch("SELECT id FROM auth.accounts")] == [new]


async def _page(auth: Auth, query: dict[str, str]) -> tuple[int, str]:
    async with auth.http.get(auth.callback_url, params=query, allow_redirects=False) as r:
        return r.status, await r.text()


async def test_tampered_expired_and_replayed_states_are_refused(
    run_auth: RunAuth, db: asyncpg.Pool
) -> None:
    ws, profile = uuid.uuid4(), uuid.uuid4()
    async with run_auth() as auth:
        user_id = add_user(auth.emulator, "careful")
        exchanges = auth.emulator.state.stats.code_exchanges

        def code(scope: str = ",".join(SCOPES)) -> str:
            return auth.emulator.state.authorize(
                "codiv-test-app", auth.settings.oauth_redirect_uri, scope, "careful"
            )

        # tampered: a valid state for another profile, with the signature of this one
        good = auth.state(ws, profile)
        other = auth.state(ws, uuid.uuid4())
        forged = other.split(".")[0] + "." + good.split(".")[1]
        status, page = await _page(auth, {"code": code(), "state": forged})
        assert status == 400
        assert "not valid" in page
        assert "Nothing was changed" in page
        # claims edited by hand, signature kept
        body, sig = good.split(".")
        status, page = await _page(auth, {"code": code(), "state": body[:-2] + "xx." + sig})
        assert status == 400
        # signed with another secret
        alien = signed.sign(
            b"x", {"ws": str(ws), "pid": str(profile), "pname": "p", "nonce": "n"}, 600
        )
        assert (await _page(auth, {"code": code(), "state": alien}))[0] == 400
        # expired (signed 11 minutes ago with a 10-minute life)
        old = auth.state(ws, profile, ttl=600, now=time.time() - 660)
        status, page = await _page(auth, {"code": code(), "state": old})
        assert status == 400
        assert "expired" in page
        # missing
        assert (await _page(auth, {"code": code()}))[0] == 400
        assert await db.fetchval("SELECT count(*) FROM auth.accounts") == 0
        assert exchanges.get(user_id, 0) == 0

        # a grant with fewer scopes than a publisher needs is refused clearly
        status, page = await _page(
            auth, {"code": code("boards:read"), "state": auth.state(ws, profile)}
        )
        assert status == 400
        assert "insufficient_scope" in page
        assert "pins:write" in page
        assert await db.fetchval("SELECT count(*) FROM auth.accounts") == 0
        exchanges.clear()

        # replayed: the first use connects, the second is refused before any exchange
        status, _ = await _page(auth, {"code": code(), "state": good})
        assert status == 302
        assert exchanges[user_id] == 1
        before = await db.fetchrow("SELECT * FROM auth.accounts")
        status, page = await _page(auth, {"code": code(), "state": good})
        assert status == 400
        assert "already used" in page
        assert exchanges[user_id] == 1
        assert dict(before) == dict(await db.fetchrow("SELECT * FROM auth.accounts"))


async def test_denied_consent_and_a_bad_code_get_clear_pages(
    run_auth: RunAuth, db: asyncpg.Pool
) -> None:
    async with run_auth() as auth:
        add_user(auth.emulator, "shy")
        state = auth.state(uuid.uuid4(), uuid.uuid4())
        async with auth.http.get(
            auth.authorize_url(state, "shy") + "&emulator_deny=1", allow_redirects=True
        ) as r:
            assert r.status == 400
            page = await r.text()
        assert "access was not granted" in page
        assert "access_denied" in page
        status, page = await _page(
            auth, {"code": "bogus", "state": auth.state(uuid.uuid4(), uuid.uuid4())}
        )
        assert status == 400
        assert "code_rejected" in page
        assert await db.fetchval("SELECT count(*) FROM auth.accounts") == 0
