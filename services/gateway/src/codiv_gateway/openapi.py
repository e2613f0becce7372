"""The OpenAPI 3.1 document, generated from the operation table and the pydantic models."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from .models import ProblemDetails

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

ERROR_TEXT = {
    400: "Malformed JSON or an invalid header (code invalid_json, invalid_idempotency_key)",
    401: "Missing, malformed, revoked or unknown API key (code unauthorized)",
    403: "Plan limit reached (code plan_limit_reached, with limit and resets_at)",
    404: "No such resource in this workspace (code not_found)",
    409: "The resource's state does not allow this (codes account_not_connected, "
    "account_needs_reauth, post_not_editable, profile_exists, idempotency_conflict)",
    413: "Body over 1 MiB (code payload_too_large)",
    422: "Validation failed; errors lists {field, message} (codes validation_error, "
    "board_not_found, board_ambiguous, board_section_not_found, idempotency_key_reused)",
    429: "Rate limit exceeded; Retry-After says when to retry (code rate_limited)",
}

RATE_HEADERS = {
    "RateLimit-Limit": "Requests allowed per window for this API key",
    "RateLimit-Remaining": "Requests left in the current window",
    "RateLimit-Reset": "Seconds until the window resets",
}


@dataclass(frozen=True)
class Operation:
    """One endpoint: its route, its handler and what the document says about it."""

    method: str
    path: str
    handler: Handler
    operation_id: str
    summary: str
    tag: str
    success: int = 200
    response: type[BaseModel] | None = None
    request: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    errors: tuple[int, ...] = ()
    description: str = ""
    idempotent_post: bool = False
    content: dict[str, Any] = field(default_factory=dict)


def _strip_null(schema: dict[str, Any]) -> dict[str, Any]:
    options = schema.get("anyOf")
    if isinstance(options, list):
        rest = [o for o in options if o.get("type") != "null"]
        if len(rest) == 1:
            merged = {k: v for k, v in schema.items() if k != "anyOf"}
            merged.update(rest[0])
            return merged
    return schema


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(mode="validation", by_alias=True)
    required = set(schema.get("required", []))
    params = []
    for name, prop in schema.get("properties", {}).items():
        prop = _strip_null(dict(prop))
        description = prop.pop("description", None)
        prop.pop("title", None)
        if prop.get("default", 0) is None:
            del prop["default"]
        param: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": prop,
        }
        if description:
            param["description"] = description
        params.append(param)
    return params


def build_spec(operations: list[Operation], *, server_url: str) -> dict[str, Any]:
    models: list[type[BaseModel]] = [ProblemDetails]
    for op in operations:
        for m in (op.request, op.response):
            if m is not None and m not in models:
                models.append(m)
    inputs = [(m, "validation") for m in models if m.model_config.get("extra") == "forbid"]
    outputs = [(m, "serialization") for m in models]
    refs, top = models_json_schema(
        [*inputs, *outputs],  # type: ignore[list-item]
        ref_template="#/components/schemas/{model}",
    )

    def ref(model: type[BaseModel], mode: str) -> dict[str, Any]:
        return refs[(model, mode)]  # type: ignore[index]

    problem = {"application/problem+json": {"schema": ref(ProblemDetails, "serialization")}}
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        params: list[dict[str, Any]] = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"{(\w+)}", op.path)
        ]
        if op.query is not None:
            params += _query_parameters(op.query)
        if op.method in ("POST", "PATCH"):
            params.append(
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "description": "Retry-safe key (1-255 printable characters), kept 24 hours",
                    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                }
            )
        headers = {
            name: {"description": text, "schema": {"type": "integer"}}
            for name, text in RATE_HEADERS.items()
        }
        success_content = op.content or (
            {"application/json": {"schema": ref(op.response, "serialization")}}
            if op.response is not None
            else {}
        )
        responses: dict[str, Any] = {
            str(op.success): {
                "description": "Success",
                "headers": headers,
                **({"content": success_content} if success_content else {}),
            }
        }
        codes = sorted({401, 429, *op.errors} | ({400, 413, 422} if op.request else set()))
        for code in codes:
            responses[str(code)] = {
                "description": ERROR_TEXT.get(code, "Error"),
                "content": problem,
            }
        responses["default"] = {"description": "Unexpected error", "content": problem}
        operation: dict[str, Any] = {
            "operationId": op.operation_id,
            "summary": op.summary,
            "tags": [op.tag],
            "parameters": params,
            "responses": responses,
            "security": [{"bearerAuth": []}],
        }
        if op.description:
            operation["description"] = op.description
        if op.request is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": ref(op.request, "validation")}},
            }
        paths.setdefault(op.path, {})[op.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Codiv API",
            "version": "1.0.0",
            "description": "Schedule and publish Pinterest pins. Authenticate with "
            "'Authorization: Bearer <API key>'. Errors are RFC 9457 problem+json with a "
            "stable code and a list of {field, message}. Every POST accepts an "
            "Idempotency-Key. Bodies are JSON whatever Content-Type says; 1 MiB at most.",
        },
        "servers": [{"url": server_url}],
        "paths": paths,
        "components": {
            "schemas": top.get("$defs", {}),
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
    }


def _schema_rows(spec: dict[str, Any], schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    props = schema.get("properties", {})
    required = set(schema.get("required", []))
    rows = []
    for name, prop in props.items():
        prop = _strip_null(prop)
        kind = prop.get("type") or ("object" if "$ref" in prop else "")
        if "enum" in prop:
            kind += " " + "|".join(map(str, prop["enum"]))
        if "const" in prop:
            kind = json.dumps(prop["const"])
        limits = ", ".join(
            f"{k} {prop[k]}"
            for k in ("maxLength", "minItems", "maxItems", "minimum", "maximum", "pattern")
            if k in prop
        )
        rows.append(
            f"<tr><td><code>{html.escape(name)}</code>{' *' if name in required else ''}</td>"
            f"<td>{html.escape(kind)}</td><td>{html.escape(limits)}</td>"
            f"<td>{html.escape(prop.get('description', ''))}</td></tr>"
        )
    if not rows:
        return ""
    return (
        "<table><tr><th>field</th><th>type</th><th>limits</th><th>notes</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def render_docs(spec: dict[str, Any]) -> str:
    """A self-contained HTML page (no scripts, no CDN) describing every operation."""
    out = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Codiv API</title><style>"
        "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;"
        "color:#222}code{background:#f3f3f3;padding:0 .2rem}table{border-collapse:collapse;"
        "margin:.5rem 0}td,th{border:1px solid #ddd;padding:.2rem .5rem;text-align:left;"
        "font-size:.9rem}h3{margin-top:2rem}.m{font-weight:bold;color:#06c}</style></head><body>",
        f"<h1>{html.escape(spec['info']['title'])} {html.escape(spec['info']['version'])}</h1>",
        f"<p>{html.escape(spec['info']['description'])}</p>",
        "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a> (OpenAPI 3.1).</p>",
        "<h2>Operations</h2><ul>",
    ]
    ops = [
        (path, method, op) for path, item in spec["paths"].items() for method, op in item.items()
    ]
    for path, method, op in ops:
        out.append(
            f"<li><a href='#{op['operationId']}'><span class='m'>{method.upper()}</span> "
            f"{html.escape(path)}</a>: {html.escape(op['summary'])}</li>"
        )
    out.append("</ul>")
    for path, method, op in ops:
        out.append(
            f"<h3 id='{op['operationId']}'><span class='m'>{method.upper()}</span> "
            f"<code>{html.escape(path)}</code></h3><p>{html.escape(op['summary'])}</p>"
        )
        if op.get("description"):
            out.append(f"<p>{html.escape(op['description'])}</p>")
        params = [p for p in op["parameters"]]
        if params:
            out.append("<p>Parameters:</p><ul>")
            for p in params:
                out.append(
                    f"<li><code>{html.escape(p['name'])}</code> ({p['in']}"
                    f"{', required' if p.get('required') else ''}) "
                    f"{html.escape(p.get('description', ''))}</li>"
                )
            out.append("</ul>")
        body = op.get("requestBody")
        if body:
            out.append("<p>Body (JSON):</p>")
            out.append(_schema_rows(spec, body["content"]["application/json"]["schema"]))
        out.append("<p>Responses:</p><ul>")
        for code, resp in op["responses"].items():
            out.append(f"<li><b>{code}</b>: {html.escape(resp['description'])}</li>")
        out.append("</ul>")
    out.append("</body></html>")
    return "".join(out)
