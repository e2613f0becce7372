"""SSRF guard: schemes, literal addresses in every form, DNS names, the resolver."""

from __future__ import annotations

import asyncio
import socket

import pytest
from codiv_common.urlguard import (
    GuardedResolver,
    UnresolvableHost,
    UnsafeURL,
    blocked_reason,
    check_url,
    parse_http_url,
    resolve_host,
)


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.9.9.9", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "cloud metadata"),
        ("169.254.1.1", "link-local"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("255.255.255.255", "broadcast"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fd00::1", "unique local"),
        ("fc00::1", "unique local"),
        ("fe80::1", "link-local"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:169.254.169.254", "cloud metadata"),
        ("64:ff9b::a9fe:a9fe", "cloud metadata"),
        ("2002:a00:1::", "private"),
        ("::10.0.0.1", "private"),
    ],
)
def test_non_public_addresses_are_refused(address: str, reason: str) -> None:
    assert blocked_reason(address) == reason


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "151.101.0.1", "172.32.0.1", "2606:4700::1111", "::ffff:8.8.8.8"]
)
def test_public_addresses_pass(address: str) -> None:
    assert blocked_reason(address) is None


def test_allow_loopback_lets_only_loopback_through() -> None:
    assert blocked_reason("127.0.0.1", allow_loopback=True) is None
    assert blocked_reason("::1", allow_loopback=True) is None
    assert blocked_reason("::ffff:127.0.0.1", allow_loopback=True) is None
    assert blocked_reason("10.0.0.1", allow_loopback=True) == "private"
    assert blocked_reason("169.254.169.254", allow_loopback=True) == "cloud metadata"


@pytest.mark.parametrize(
    "url", ["ftp://example.com/a", "file:///etc/passwd", "gopher://x", "javascript:alert(1)", "x"]
)
def test_only_http_and_https(url: str) -> None:
    with pytest.raises(UnsafeURL) as info:
        parse_http_url(url)
    assert info.value.code == "scheme"


def test_parse_defaults_ports_and_strips_trailing_dot() -> None:
    assert parse_http_url("https://Example.com./a").host == "example.com"
    assert parse_http_url("https://example.com/a").port == 443
    assert parse_http_url("http://example.com:8080/").port == 8080
    with pytest.raises(UnsafeURL):
        parse_http_url("http:///nohost")
    with pytest.raises(UnsafeURL):
        parse_http_url("http://exa mple.com/")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x",
        "http://10.0.0.5/x",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:8080/x",
        "http://[::ffff:127.0.0.1]/x",
        "http://[fd12::1]/x",
        "http://localhost/x",
        "http://2130706433/x",  # 127.0.0.1 written as one integer: resolved, then refused
    ],
)
async def test_check_url_refuses(url: str) -> None:
    with pytest.raises(UnsafeURL) as info:
        await check_url(url)
    assert info.value.code == "address"


def _fake_dns(monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[str]]) -> None:
    loop = asyncio.get_running_loop()

    async def getaddrinfo(host: str, port: int, **_: object) -> list[tuple[object, ...]]:
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "unknown")
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in answers[host]
        ]

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)


async def test_dns_name_resolving_to_loopback_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = {"evil.example": ["127.0.0.1"], "mixed.example": ["8.8.8.8", "10.0.0.1"]}
    _fake_dns(monkeypatch, answers)
    with pytest.raises(UnsafeURL, match=r"resolves to 127\.0\.0\.1"):
        await check_url("https://evil.example/a.jpg")
    # one private record among public ones is enough to refuse
    with pytest.raises(UnsafeURL, match="private"):
        await check_url("https://mixed.example/a.jpg")


async def test_public_dns_name_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_dns(monkeypatch, {"cdn.example": ["151.101.1.1", "2606:4700::1"]})
    assert [str(a) for a in await check_url("https://cdn.example/a.jpg")] == [
        "151.101.1.1",
        "2606:4700::1",
    ]


async def test_real_resolution_of_this_machines_name() -> None:
    name = socket.gethostname()
    try:
        addresses = await resolve_host(name)
    except UnresolvableHost:
        pytest.skip("this machine's name does not resolve")
    if not all(blocked_reason(a) == "loopback" for a in addresses):
        pytest.skip("this machine's name does not resolve to loopback")
    with pytest.raises(UnsafeURL, match="loopback"):
        await check_url(f"http://{name}/x")


async def test_allow_loopback_accepts_local_dev_urls() -> None:
    assert [str(a) for a in await check_url("http://127.0.0.1:8090/a", allow_loopback=True)] == [
        "127.0.0.1"
    ]
    addresses = await check_url("http://localhost:8090/a", allow_loopback=True)
    assert addresses


async def test_unresolvable_name_is_its_own_error() -> None:
    with pytest.raises(UnresolvableHost):
        await check_url("https://no-such-host.invalid/a.jpg", timeout=2)


async def test_guarded_resolver_refuses_at_connect_time() -> None:
    resolver = GuardedResolver()
    try:
        with pytest.raises(OSError, match="loopback"):
            await resolver.resolve("localhost", 80)
    finally:
        await resolver.close()
    allowed = GuardedResolver(allow_loopback=True)
    try:
        assert await allowed.resolve("localhost", 80)
    finally:
        await allowed.close()


async def test_dns_cache_shares_lookups_and_remembers_failures(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asyncio

    from codiv_common.urlguard import DnsCache, UnresolvableHost, resolve_host

    calls: list[str] = []
    loop = asyncio.get_running_loop()

    async def fake(host: str, port: int, **_: object) -> list[tuple]:  # type: ignore[type-arg]
        calls.append(host)
        await asyncio.sleep(0.05)
        if host == "nowhere.test":
            raise OSError("no such host")
        return [(2, 1, 6, "", ("93.184.216.34", port))]

    monkeypatch.setattr(loop, "getaddrinfo", fake)
    cache = DnsCache(ttl=60, negative_ttl=60)
    got = await asyncio.gather(*(resolve_host("cdn.test", cache=cache) for _ in range(20)))
    assert all(str(g[0]) == "93.184.216.34" for g in got)
    assert calls == ["cdn.test"]  # twenty concurrent checks, one lookup
    for _ in range(3):
        with pytest.raises(UnresolvableHost):
            await resolve_host("nowhere.test", cache=cache)
    assert calls == ["cdn.test", "nowhere.test"]
    # without a cache every call resolves
    await resolve_host("cdn.test")
    assert calls.count("cdn.test") == 2
