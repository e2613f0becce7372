"""Video downloads: streamed to a temporary file, size-limited, with the gateway's SSRF checks."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urljoin

import aiohttp
from codiv_common.urlguard import UnresolvableHost, UnsafeURL, check_url

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 5
_CHUNK = 1 << 20


class MediaFetchError(Exception):
    """The video could not be fetched. ``permanent``: retrying cannot help."""

    def __init__(self, code: str, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.permanent = permanent


@dataclass(frozen=True)
class DownloadedFile:
    path: Path
    size: int


class VideoDownloader:
    """Downloads a customer's video URL the way the gateway validates it.

    Every URL (and every redirect target) is checked with
    :func:`codiv_common.urlguard.check_url`; the session given here must use a
    :class:`codiv_common.urlguard.GuardedResolver` so the connection itself is refused
    for a non-public address (DNS rebinding).
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        max_bytes: int,
        timeout: float,
        connect_timeout: float,
        allow_loopback: bool = False,
        temp_dir: str | None = None,
    ) -> None:
        self._session = session
        self._max_bytes = max_bytes
        self._timeout = aiohttp.ClientTimeout(
            total=timeout, sock_connect=connect_timeout, sock_read=min(timeout, 60.0)
        )
        self._allow_loopback = allow_loopback
        self._temp_dir = temp_dir

    def _too_large(self) -> MediaFetchError:
        mb = self._max_bytes / (1024 * 1024)
        return MediaFetchError(
            "video_too_large",
            f"The video is larger than the {mb:g} MB limit. Upload a shorter or more "
            "compressed video.",
            permanent=True,
        )

    @contextlib.asynccontextmanager
    async def download(self, url: str) -> AsyncIterator[DownloadedFile]:
        """Download ``url``; the temporary file is deleted when the block exits."""
        fd, name = await asyncio.to_thread(tempfile.mkstemp, ".video", "codiv-", self._temp_dir)
        path = Path(name)
        try:
            handle = os.fdopen(fd, "wb")
            try:
                size = await self._fetch(url, handle)
            finally:
                await asyncio.to_thread(handle.close)
            yield DownloadedFile(path, size)
        finally:
            with contextlib.suppress(OSError):
                await asyncio.to_thread(path.unlink)

    async def _fetch(self, url: str, handle: BinaryIO) -> int:
        current = url
        for _ in range(_MAX_REDIRECTS + 1):
            await self._check(current)
            try:
                async with self._session.get(
                    current, allow_redirects=False, timeout=self._timeout
                ) as resp:
                    if resp.status in _REDIRECTS and "Location" in resp.headers:
                        current = urljoin(current, resp.headers["Location"])
                        continue
                    self._check_status(resp.status)
                    if resp.content_length is not None and resp.content_length > self._max_bytes:
                        raise self._too_large()
                    size = 0
                    async for chunk in resp.content.iter_chunked(_CHUNK):
                        size += len(chunk)
                        if size > self._max_bytes:
                            raise self._too_large()
                        await asyncio.to_thread(handle.write, chunk)
                    if size == 0:
                        raise MediaFetchError(
                            "video_download_failed",
                            "The video URL returned an empty file.",
                            permanent=True,
                        )
                    return size
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                raise MediaFetchError(
                    "video_download_failed",
                    f"Downloading the video failed ({type(exc).__name__}).",
                    permanent=False,
                ) from exc
        raise MediaFetchError(
            "video_download_failed", "The video URL redirects too many times.", permanent=True
        )

    async def _check(self, url: str) -> None:
        try:
            await check_url(url, allow_loopback=self._allow_loopback)
        except UnresolvableHost as exc:
            raise MediaFetchError(
                "video_download_failed",
                f"The video's host does not resolve ({exc.host}).",
                permanent=False,
            ) from exc
        except UnsafeURL as exc:
            raise MediaFetchError(
                "media_url_not_allowed",
                f"The video URL is not allowed: {exc.message}.",
                permanent=True,
            ) from exc

    @staticmethod
    def _check_status(status: int) -> None:
        if 200 <= status < 300:
            return
        if status in (408, 425, 429) or status >= 500:
            raise MediaFetchError(
                "video_download_failed",
                f"The video's server answered HTTP {status}.",
                permanent=False,
            )
        raise MediaFetchError(
            "video_download_failed",
            f"The video URL answered HTTP {status}. Check that the URL is public and correct.",
            permanent=True,
        )
