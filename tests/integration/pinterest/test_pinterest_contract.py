"""The contract layer itself: the emulator's routes match the spec, and violations are caught."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from codiv_pinterest import InvalidResponse, PinterestClient
from codiv_pinterest.contract import (
    ContractChecker,
    Exchange,
    Recorder,
    SpecRequest,
    SpecResponse,
)
from codiv_pinterest.emulator import ROUTES
from codiv_pinterest.testing import RunningEmulator
from multidict import CIMultiDict, MultiDict


def _request(method: str, path: str, **kw: Any) -> SpecRequest:
    headers = CIMultiDict(kw.pop("headers", {"Authorization": "Bearer pina_x"}))
    body = kw.pop("body", None)
    content_type = kw.pop("content_type", "application/json" if body else "")
    return SpecRequest(method, path, MultiDict(kw.pop("query", {})), headers, body, content_type)


def _response(status: int, data: Any) -> SpecResponse:
    return SpecResponse(status, json.dumps(data).encode(), "application/json", CIMultiDict())


def test_every_emulated_route_is_in_the_spec_with_its_category_and_scopes(
    contract: ContractChecker,
) -> None:
    for route in ROUTES:
        operation = contract.spec["paths"][route.path][route.method.lower()]
        assert operation["operationId"] == route.operation_id
        assert operation["x-ratelimit-category"] == route.category
        schemes = operation["security"]
        oauth = next(s["pinterest_oauth2"] for s in schemes if "pinterest_oauth2" in s)
        assert sorted(oauth) == sorted(route.scopes), route


def test_conforming_exchange_has_no_problems(contract: ContractChecker) -> None:
    source = {"source_type": "image_url", "url": "https://x/a.jpg"}
    body = {"board_id": "12", "media_source": source}
    answer = {"id": "34", "board_id": "12", "created_at": "2025-01-01T00:00:00Z"}
    exchange = Exchange(
        _request("post", "/v5/pins", body=json.dumps(body).encode()), _response(201, answer)
    )
    assert contract.problems(exchange) == []


def test_request_with_a_wrong_field_is_caught(contract: ContractChecker) -> None:
    body = {
        "board_id": "my-board",
        "title": "x" * 101,
        "media_source": {"source_type": "image_url"},
    }
    request = _request("post", "/v5/pins", body=json.dumps(body).encode())
    text = "\n".join(contract.problems(Exchange(request, None)))
    assert "does not match" in text  # board_id is not digits
    assert "is too long" in text  # title > 100
    assert "'url' is a required property" in text


def test_request_without_bearer_token_is_caught(contract: ContractChecker) -> None:
    problems = contract.problems(Exchange(_request("get", "/v5/user_account", headers={}), None))
    assert any("SecurityValidationError" in p for p in problems)


def test_page_size_over_the_spec_maximum_is_caught(contract: ContractChecker) -> None:
    request = _request("get", "/v5/boards", query={"page_size": "251"})
    assert any("page_size" in p for p in contract.problems(Exchange(request, None)))


def test_metric_types_overlap_is_tolerated_but_unknown_metrics_are_not(
    contract: ContractChecker,
) -> None:
    query = {"start_date": "2025-01-01", "end_date": "2025-01-05"}
    path = "/v5/pins/1/analytics"
    good = _request("get", path, query=query | {"metric_types": "IMPRESSION,SAVE"})
    assert contract.problems(Exchange(good, None)) == []
    bad = _request("get", path, query=query | {"metric_types": "IMPRESSION,BOGUS"})
    assert any("metric_types" in p for p in contract.problems(Exchange(bad, None)))


def test_non_conforming_response_bodies_are_caught(contract: ContractChecker) -> None:
    boards = _request("get", "/v5/boards")
    missing_name = _response(200, {"items": [{"id": "1"}], "bookmark": None})
    problems = contract.problems(Exchange(boards, missing_name))
    assert any("'name' is a required property" in p for p in problems)
    naive = {"id": "1", "name": "b", "created_at": "2022-10-13T01:40:29"}
    problems = contract.problems(Exchange(boards, _response(200, {"items": [naive]})))
    assert any("date-time" in p for p in problems)
    problems = contract.problems(Exchange(boards, _response(404, {"message": "Not found."})))
    assert any("'code' is a required property" in p for p in problems)


def test_refresh_answer_without_new_refresh_token_is_caught(contract: ContractChecker) -> None:
    request = _request(
        "post",
        "/v5/oauth/token",
        headers={"Authorization": "Basic YTpi"},
        body=b"grant_type=refresh_token&refresh_token=pinr.old",
        content_type="application/x-www-form-urlencoded",
    )
    answer = {
        "access_token": "pina_new",
        "token_type": "bearer",
        "expires_in": 60,
        "scope": "pins:read",
        "response_type": "refresh_token",
    }
    problems = contract.problems(Exchange(request, _response(200, answer)))
    assert any("'refresh_token' is a required property" in p for p in problems)


async def test_a_non_conforming_server_is_caught_end_to_end(
    contract: ContractChecker, http: aiohttp.ClientSession
) -> None:
    """A test double answers a Board without ``name``: both the client and the recorder object."""
    recorder = Recorder()

    async def bad_board(request: web.Request) -> web.Response:
        return web.json_response({"id": request.match_info["board_id"], "privacy": "OPEN"})

    app = web.Application(middlewares=[recorder.middleware])
    app.router.add_get("/v5/boards/{board_id}", bad_board)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        host, port = runner.addresses[0][:2]
        client = PinterestClient(http, f"http://{host}:{port}/v5")
        with pytest.raises(InvalidResponse):
            await client.get_board("pina_token", "123")
    finally:
        await runner.cleanup()
    assert len(recorder.exchanges) == 1
    problems = contract.problems(recorder.exchanges[0])
    assert any("'name' is a required property" in p for p in problems)
    assert any("OPEN" in p for p in problems)  # privacy outside the enum


async def test_recorder_sees_the_client_traffic(
    client: PinterestClient, token: str, recorder: Recorder, contract: ContractChecker
) -> None:
    await client.get_user_account(token)
    await client.list_boards(token)
    assert [x.request.path for x in recorder.exchanges] == ["/v5/user_account", "/v5/boards"]
    assert all(x.response is not None for x in recorder.exchanges)
    assert all(contract.problems(x) == [] for x in recorder.exchanges)


async def test_emulator_fixture_flags_an_invalid_request(
    emulator: RunningEmulator,
    http: aiohttp.ClientSession,
    recorder: Recorder,
    contract: ContractChecker,
) -> None:
    async with http.get(
        f"{emulator.api_base_url}/boards",
        params={"page_size": "0"},
        headers={"Authorization": "Bearer nope"},
    ) as resp:
        assert resp.status == 401
    (exchange,) = recorder.exchanges
    assert any("page_size" in p for p in contract.problems(exchange))
    recorder.exchanges.clear()  # a deliberate violation: keep the fixture's final check green
