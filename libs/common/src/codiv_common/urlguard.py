"""SSRF guard: refuse non-http(s) URLs and hosts that are (or resolve to) non-public addresses."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_V4_BLOCKED: tuple[tuple[ipaddress.IPv4Network, str], ...] = tuple(
    (ipaddress.IPv4Network(net), reason)
    for net, reason in (
        ("0.0.0.0/8", "unspecified"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "carrier-grade NAT"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "reserved"),
        ("192.0.2.0/24", "documentation"),
        ("192.88.99.0/24", "reserved"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
    )
)
_V6_BLOCKED: tuple[tuple[ipaddress.IPv6Network, str], ...] = tuple(
    (ipaddress.IPv6Network(net), reason)
    for net, reason in (
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("100::/64", "discard"),
        ("2001::/32", "Teredo"),
        ("2001:db8::/32", "documentation"),
        ("fc00::/7", "unique local"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local"),
        ("ff00::/8", "multicast"),
    )
)
_METADATA = ipaddress.IPv4Address("169.254.169.254")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_V4_COMPAT = ipaddress.IPv6Network("::/96")


class UnsafeURL(ValueError):
    """The URL is refused; ``code``: ``scheme``, ``host``, ``address`` or ``unresolvable``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class UnresolvableHost(UnsafeURL):
    """The host name did not resolve (now); the URL may still be fine later."""

    def __init__(self, host: str) -> None:
        super().__init__("unresolvable", f"host {host!r} does not resolve")
        self.host = host


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 form carries (mapped, NAT64, 6to4, IPv4-compatible)."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _V4_COMPAT and int(ip) > 1:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def blocked_reason(address: str | IPAddress, *, allow_loopback: bool = False) -> str | None:
    """Why ``address`` must not be contacted (e.g. ``"private"``), or None when it is public.

    IPv6 forms that embed an IPv4 address (``::ffff:10.0.0.1``, NAT64, 6to4) are judged
    by the IPv4 address they carry. ``allow_loopback`` (local development only) lets
    127.0.0.0/8 and ::1 through.
    """
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            ip = ipaddress.IPv6Address(str(ip).split("%", 1)[0])
        inner = _embedded_v4(ip)
        if inner is not None:
            return blocked_reason(inner, allow_loopback=allow_loopback)
        for net6, reason in _V6_BLOCKED:
            if ip in net6:
                if reason == "loopback" and allow_loopback:
                    return None
                return reason
        return None
    if ip == _METADATA:
        return "cloud metadata"
    if ip == ipaddress.IPv4Address("255.255.255.255"):
        return "broadcast"
    for net4, reason in _V4_BLOCKED:
        if ip in net4:
            if reason == "loopback" and allow_loopback:
                return None
            return reason
    return None


@dataclass(frozen=True)
class ParsedURL:
    scheme: str
    host: str
    port: int


def parse_http_url(url: str) -> ParsedURL:
    """Split an http(s) URL; raise :class:`UnsafeURL` for any other scheme or no host."""
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise UnsafeURL("scheme", "must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeURL("host", f"is not a valid URL: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UnsafeURL("scheme", "must be an http or https URL")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise UnsafeURL("host", "must name a host")
    return ParsedURL(scheme, host, port or (443 if scheme == "https" else 80))


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _check_all(host: str, addresses: Iterable[IPAddress], allow_loopback: bool) -> None:
    for ip in addresses:
        reason = blocked_reason(ip, allow_loopback=allow_loopback)
        if reason is not None:
            what = "is" if _literal(host) is not None else f"resolves to {ip}, which is"
            raise UnsafeURL("address", f"host {host!r} {what} a {reason} address")


class DnsCache:
    """A small per-process cache of lookups (answers and failures), sharing in-flight ones.

    Many posts name the same CDN host: without it, a burst of requests turns into a
    burst of concurrent ``getaddrinfo`` calls that queue in the resolver's thread pool.
    Answers are kept ``ttl`` seconds, failures ``negative_ttl``; the fetch-time check
    (:class:`GuardedResolver`) does not use it, so a cached answer never decides where a
    connection goes.
    """

    def __init__(self, ttl: float = 60.0, negative_ttl: float = 15.0, size: int = 4096) -> None:
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.size = size
        self._answers: dict[tuple[str, int], tuple[float, list[IPAddress] | None]] = {}
        self._inflight: dict[tuple[str, int], asyncio.Future[list[IPAddress] | None]] = {}

    async def lookup(self, host: str, port: int, timeout: float) -> list[IPAddress] | None:
        key = (host.lower(), port)
        loop = asyncio.get_running_loop()
        hit = self._answers.get(key)
        if hit is not None and hit[0] > loop.time():
            return hit[1]
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[list[IPAddress] | None] = loop.create_future()
        self._inflight[key] = future
        try:
            result = await _getaddrinfo(host, port, timeout)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it
            raise
        else:
            future.set_result(result)
        finally:
            self._inflight.pop(key, None)
        if len(self._answers) >= self.size:
            self._answers.clear()
        ttl = self.ttl if result is not None else self.negative_ttl
        self._answers[key] = (loop.time() + ttl, result)
        return result


async def _getaddrinfo(host: str, port: int, timeout: float) -> list[IPAddress] | None:
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout
        )
    except (OSError, TimeoutError, UnicodeError):
        return None
    found: list[IPAddress] = []
    for *_, sockaddr in infos:
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if ip not in found:
            found.append(ip)
    return found or None


async def resolve_host(
    host: str, port: int = 443, *, timeout: float = 3.0, cache: DnsCache | None = None
) -> list[IPAddress]:
    """Every address ``host`` resolves to (IPv4 and IPv6), via the loop's getaddrinfo.

    With a :class:`DnsCache` (one per process, owned by the caller) recent answers are
    reused. Raises :class:`UnresolvableHost` when there is no answer.
    """
    literal = _literal(host)
    if literal is not None:
        return [literal]
    if cache is not None:
        found = await cache.lookup(host, port, timeout)
    else:
        found = await _getaddrinfo(host, port, timeout)
    if not found:
        raise UnresolvableHost(host)
    return list(found)


async def check_url(
    url: str,
    *,
    allow_loopback: bool = False,
    timeout: float = 3.0,
    cache: DnsCache | None = None,
) -> list[IPAddress]:
    """Validate ``url`` for server-side fetching; return the addresses it resolves to.

    Raises :class:`UnsafeURL` (scheme, host, or a non-public address among the resolved
    ones) or :class:`UnresolvableHost` when the name does not resolve. Every resolved
    address must be public, so a name with one private record is refused. Fetch with
    :class:`GuardedResolver` as well, so a DNS answer that changes between this check
    and the connection (rebinding) is refused at connect time too.
    """
    parsed = parse_http_url(url)
    literal = _literal(parsed.host)
    if literal is not None:
        _check_all(parsed.host, [literal], allow_loopback)
        return [literal]
    name = parsed.host.lower()
    if (name == "localhost" or name.endswith(".localhost")) and not allow_loopback:
        raise UnsafeURL("address", f"host {parsed.host!r} is a loopback name")
    addresses = await resolve_host(parsed.host, parsed.port, timeout=timeout, cache=cache)
    _check_all(parsed.host, addresses, allow_loopback)
    return addresses


class GuardedResolver(AbstractResolver):
    """An aiohttp resolver that refuses non-public addresses at connection time.

    ``aiohttp.TCPConnector(resolver=GuardedResolver())`` makes every connection of a
    session subject to the same rules as :func:`check_url`, which closes the gap a
    DNS-rebinding host would otherwise use.
    """

    def __init__(self, *, allow_loopback: bool = False, inner: AbstractResolver | None = None):
        self._allow_loopback = allow_loopback
        self._inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            reason = blocked_reason(str(result["host"]), allow_loopback=self._allow_loopback)
            if reason is not None:
                raise OSError(f"refused to connect to {host!r}: {reason} address")
        return results

    async def close(self) -> None:
        await self._inner.close()


def describe(exc: UnsafeURL) -> dict[str, Any]:
    """A small dict for logs and API errors."""
    return {"code": exc.code, "message": exc.message}


__all__ = [
    "DnsCache",
    "GuardedResolver",
    "UnresolvableHost",
    "UnsafeURL",
    "blocked_reason",
    "check_url",
    "describe",
    "parse_http_url",
    "resolve_host",
]
