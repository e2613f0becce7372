"""structlog configuration: JSON off a TTY, console on one, with secret redaction."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO, cast

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

REDACTED = "[REDACTED]"

_SECRET_KEY = re.compile(
    r"(authorization|token|secret|password|passwd|api[_-]?key|cookie|credential|"
    r"encryption[_-]?key|private[_-]?key|signature)",
    re.IGNORECASE,
)
# Keys that contain a secret word but carry no secret value.
_SAFE_KEYS = frozenset(
    {"token_expires_at", "token_health", "token_status", "key_id", "api_key_prefix", "secret_id"}
)
_VALUE_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Authorization: Bearer <x> / Basic <x>
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]+"), r"\1 " + REDACTED),
    # key=value pairs in URLs, form bodies and free text
    (
        re.compile(
            r"(?i)(?<![\w-])((?:access_|refresh_|id_)?token|client_secret|password|api_key|secret)"
            r"(\"?\s*[=:]\s*\"?)([^&\s\"',}]+)"
        ),
        r"\1\2" + REDACTED,
    ),
    # single-use OAuth codes in callback URLs
    (re.compile(r"([?&]code=)[^&\s\"']+"), r"\1" + REDACTED),
    # credentials in DSNs: scheme://user:password@host
    (re.compile(r"([a-z][a-z0-9+.\-]*://[^:/@\s]+:)[^@\s]+@"), r"\1" + REDACTED + "@"),
    # Pinterest tokens and our own API keys, wherever they appear
    (re.compile(r"\bpin[ar][A-Za-z0-9_.\-]{8,}"), REDACTED),
    (re.compile(r"\bcdv_(?:live|test)_[A-Za-z0-9_\-]{8,}"), REDACTED),
)


def redact_text(text: str) -> str:
    """Mask secrets (bearer tokens, token=..., DSN passwords, known token shapes) in text."""
    for pattern, replacement in _VALUE_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _redact(value: Any, depth: int = 0) -> Any:
    if depth > 8:
        return value
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {
            k: (REDACTED if _is_secret_key(k) else _redact(v, depth + 1)) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact(v, depth + 1) for v in value]
    if hasattr(value, "get_secret_value"):
        return REDACTED
    return value


def _is_secret_key(key: object) -> bool:
    if not isinstance(key, str) or key in _SAFE_KEYS:
        return False
    return bool(_SECRET_KEY.search(key))


def redact_secrets(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """structlog processor: replace secret values anywhere in the event dict."""
    out: MutableMapping[str, Any] = {}
    for key, value in event_dict.items():
        out[key] = REDACTED if _is_secret_key(key) else _redact(value)
    return dict(out)


def configure_logging(level: str = "INFO", fmt: str = "auto", service: str | None = None) -> None:
    """Configure structlog (and the stdlib root logger) for one process.

    ``fmt`` is ``json``, ``console`` or ``auto`` (console on a TTY, JSON otherwise).
    Every line passes through :func:`redact_secrets`, after exception rendering, so
    tracebacks are redacted too.
    """
    use_console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if service:
        shared.insert(0, _add_service(service))
    renderer: Processor
    if use_console:
        renderer = structlog.dev.ConsoleRenderer(colors=False)
        tail: list[Processor] = [redact_secrets, renderer]
    else:
        renderer = structlog.processors.JSONRenderer()
        tail = [structlog.processors.format_exc_info, redact_secrets, renderer]
    numeric = logging.getLevelNamesMapping()[level]
    structlog.configure(
        processors=[*shared, structlog.processors.StackInfoRenderer(), *tail],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=cast(TextIO, _CurrentStderr())),
        cache_logger_on_first_use=False,
    )
    # stdlib loggers (aiohttp access log, aio-pika) go through the same redaction
    handler = logging.StreamHandler(_CurrentStderr())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *tail,
            ],
            foreign_pre_chain=shared,
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(numeric, logging.INFO))
    for noisy in ("aio_pika", "aiormq", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the time (test capture swaps it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def _add_service(service: str) -> Processor:
    def processor(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
        event_dict.setdefault("service", service)
        return event_dict

    return processor


def bind_context(**values: Any) -> None:
    """Bind ids (request_id, event_id, post_id, ...) to the current task's log context."""
    structlog.contextvars.bind_contextvars(**values)


def get_logger(name: str | None = None) -> Any:
    """Return a structlog logger."""
    return structlog.get_logger(name)
