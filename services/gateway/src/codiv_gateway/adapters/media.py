"""Media probe for the preflight: fetch the first bytes of a URL through the SSRF guard."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

import aiohttp
from codiv_common.urlguard import GuardedResolver

HEAD_BYTES = 64 * 1024
_RANGE_TOTAL = re.compile(r"/(\d+)\s*$")


@dataclass(frozen=True)
class Probe:
    """What a GET of the first bytes told: an error, or the type, total size and head."""

    error: str | None
    content_type: str | None = None
    size: int | None = None
    head: bytes = b""


class MediaProbe:
    """Reads the first 64 KiB of media URLs; every connection goes through the SSRF guard."""

    def __init__(self, *, allow_loopback: bool, timeout: float) -> None:
        self._allow_loopback = allow_loopback
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            resolver=GuardedResolver(allow_loopback=self._allow_loopback), limit=20
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self._timeout),
            headers={"User-Agent": "codiv-preflight/1"},
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def probe(self, url: str) -> Probe:
        if self._session is None:
            raise RuntimeError("MediaProbe.start() was not called")
        try:
            async with self._session.get(
                url, headers={"Range": f"bytes=0-{HEAD_BYTES - 1}"}, max_redirects=3
            ) as resp:
                if resp.status not in (200, 206):
                    return Probe(f"is not reachable: the server answered HTTP {resp.status}")
                head = bytearray()
                while len(head) < HEAD_BYTES:
                    chunk = await resp.content.read(HEAD_BYTES - len(head))
                    if not chunk:
                        break
                    head.extend(chunk)
                size: int | None = None
                total = _RANGE_TOTAL.search(resp.headers.get("Content-Range", ""))
                if total:
                    size = int(total.group(1))
                elif resp.status == 200 and resp.content_length is not None:
                    size = resp.content_length
                ctype = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
                return Probe(None, ctype or None, size, bytes(head))
        except aiohttp.TooManyRedirects:
            return Probe("is not reachable: too many redirects")
        except TimeoutError:
            return Probe(f"is not reachable: no answer within {self._timeout:g} s")
        except aiohttp.ClientConnectorError as exc:
            text = str(exc.os_error) if exc.os_error else str(exc)
            if "refused to connect" in text:
                return Probe(f"is refused: {text}")
            return Probe(f"is not reachable: {text}")
        except (aiohttp.ClientError, asyncio.IncompleteReadError, OSError) as exc:
            return Probe(f"is not reachable: {type(exc).__name__}: {exc}")
