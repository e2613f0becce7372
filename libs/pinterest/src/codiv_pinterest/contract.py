"""Check recorded Pinterest traffic against the vendored OpenAPI spec (needs ``openapi-core``).

Install the ``contract`` extra (``codiv-pinterest[contract]``) to use this module. Typical
use: pass ``Recorder().middleware`` to ``create_app``/``run_emulator`` and, after the test,
run ``ContractChecker.load().problems(exchange)`` over ``recorder.exchanges``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web
from multidict import CIMultiDict, MultiDict
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.security.exceptions import SecurityProviderError
from openapi_core.security.factories import SecurityProviderFactory
from openapi_core.security.providers import BaseProvider
from openapi_core.validation.request.exceptions import InvalidParameter
from openapi_schema_validator import OAS30Validator

__all__ = [
    "ContractChecker",
    "Exchange",
    "Recorder",
    "SpecRequest",
    "SpecResponse",
    "spec_path",
]


def spec_path() -> Path:
    """The vendored Pinterest spec: inside the wheel, or ``libs/pinterest/spec`` in a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "spec", here.parents[1] / "spec"):
        if (candidate / "openapi.json").is_file():
            return candidate / "openapi.json"
    raise FileNotFoundError("the vendored Pinterest openapi.json is missing")


SPEC_HOST = "https://api.pinterest.com"  # the spec's server is https://api.pinterest.com/v5


class _BearerProvider(BaseProvider):
    """openapi-core only warns on oauth2 schemes; Pinterest's means a Bearer header."""

    def __call__(self, parameters: RequestParameters) -> Any:
        header = parameters.header.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value:
            raise SecurityProviderError("Missing Bearer token.")
        return value


class _SecurityFactory(SecurityProviderFactory):
    PROVIDERS = {**SecurityProviderFactory.PROVIDERS, "oauth2": _BearerProvider}


@dataclass
class SpecRequest:
    """openapi-core's Request protocol over a recorded request."""

    method: str
    path: str
    query: MultiDict[str]
    headers: CIMultiDict[str]
    body: bytes | None
    content_type: str
    host_url: str = SPEC_HOST
    parameters: RequestParameters = field(init=False)

    def __post_init__(self) -> None:
        self.parameters = RequestParameters(query=self.query, header=self.headers, cookie={})


@dataclass
class SpecResponse:
    status_code: int
    data: bytes
    content_type: str
    headers: CIMultiDict[str]


@dataclass
class Exchange:
    request: SpecRequest
    response: SpecResponse | None  # None: the connection was dropped (injected fault)


def _describe(error: Exception) -> str:
    text = f"{type(error).__name__}: {error}"
    return f"{text} ({error.__cause__})" if error.__cause__ is not None else text


def _is_metric_types_overlap(error: Exception) -> bool:
    # Spec quirk (NOTES.md section 10): the pin analytics metric_types items are a oneOf of
    # overlapping enums, so a strict validator calls a correct IMPRESSION "valid under each
    # of". That one error is the spec's own overlap; anything else about it still counts.
    if not isinstance(error, InvalidParameter) or error.name != "metric_types":
        return False
    schema_errors = getattr(error.__cause__, "schema_errors", None) or ()
    return bool(schema_errors) and all(
        e.validator == "oneOf" and "is valid under each of" in e.message for e in schema_errors
    )


class ContractChecker:
    """Validates recorded exchanges against the vendored spec."""

    def __init__(self, spec: dict[str, Any]) -> None:
        """Build from the parsed spec; prefer :meth:`load` (slow: keep one per process)."""
        self.spec = spec
        self.api = OpenAPI.from_dict(
            spec, config=Config(security_provider_factory=_SecurityFactory())
        )

    @classmethod
    def load(cls, path: Path | None = None) -> ContractChecker:
        return cls(json.loads((path or spec_path()).read_text(encoding="utf-8")))

    def _component(self, name: str, instance: Any) -> list[str]:
        schema = {"$ref": f"#/components/schemas/{name}", "components": self.spec["components"]}
        return [e.message for e in OAS30Validator(schema).iter_errors(instance)]

    def _discriminated(self, exchange: Exchange) -> list[str]:
        # Spec quirk: OauthAccessTokenRequest/Response carry a discriminator without a
        # oneOf, so a validator never reaches the mapped schemas; follow the mapping here.
        req, resp = exchange.request, exchange.response
        if req.path != "/v5/oauth/token" or req.method != "post":
            return []
        problems: list[str] = []
        form = dict(MultiDict(_parse_form(req.body or b"")))
        request_schema = {
            "authorization_code": "OauthAccessTokenRequestCode",
            "refresh_token": "OauthAccessTokenRequestRefresh",
        }.get(form.get("grant_type", ""))
        if request_schema:
            problems += [f"request: {m}" for m in self._component(request_schema, form)]
        if resp is not None and resp.status_code == 200:
            body = json.loads(resp.data)
            response_schema = {
                "authorization_code": "OauthAccessTokenResponseCode",
                "refresh_token": "OauthAccessTokenResponseRefresh",
            }.get(body.get("response_type"), "OauthAccessTokenResponse")
            problems += [f"response: {m}" for m in self._component(response_schema, body)]
        return problems

    def problems(self, exchange: Exchange) -> list[str]:
        req = exchange.request
        found = [
            f"request: {_describe(e)}"
            for e in self.api.iter_request_errors(req)
            if not _is_metric_types_overlap(e)
        ]
        if exchange.response is not None:
            found += [
                f"response {exchange.response.status_code}: {_describe(e)}"
                for e in self.api.iter_response_errors(req, exchange.response)
            ]
        found += self._discriminated(exchange)
        return found


def _parse_form(body: bytes) -> list[tuple[str, str]]:
    return parse_qsl(body.decode(), keep_blank_values=True)


class Recorder:
    """An outer aiohttp middleware that keeps every /v5 exchange for validation."""

    def __init__(self) -> None:
        self.exchanges: list[Exchange] = []

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if not request.path.startswith("/v5"):
            return await handler(request)
        body = await request.read() if request.can_read_body else None
        spec_request = SpecRequest(
            method=request.method.lower(),
            path=request.path,
            query=MultiDict(request.query),
            headers=CIMultiDict(request.headers),
            body=body,
            content_type=request.headers.get("Content-Type", ""),
        )
        response = await handler(request)
        transport = request.transport
        dropped = transport is None or transport.is_closing()
        spec_response = None
        if not dropped:
            assert isinstance(response, web.Response), "the emulator answers /v5 with web.Response"
            raw = response.body
            data = raw if isinstance(raw, bytes) else b""
            spec_response = SpecResponse(
                response.status,
                data,
                response.headers.get("Content-Type", ""),
                CIMultiDict(response.headers),
            )
        self.exchanges.append(Exchange(spec_request, spec_response))
        return response
