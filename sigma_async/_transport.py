"""The HTTP transport: one pooled aiohttp session, timeouts, a cap on what is read, errors mapped; and a second,
credential-free reader for public resources (HLS playlists). The only module that imports aiohttp."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import aiohttp
from yarl import URL

from ._config import USER_AGENT
from ._protocol import Request, Response
from .errors import APIConnectionError, APITimeoutError, ResponseDecodeError, SigmaError

__all__ = ["DEFAULT_MAX_BODY", "PLAYLIST_MAX_BODY", "FetchError", "Fetched", "PublicReader", "Transport"]

logger = logging.getLogger("sigma_async")

#: Largest body read (bytes). A listing of 1,000 sessions is well under 2 MiB; past this something is wrong.
DEFAULT_MAX_BODY: Final = 32 * 1024 * 1024
_JSON_HEADERS: Final = {"Content-Type": "application/json"}


class Transport:
    """Sends a ``Request`` and returns a ``Response`` with its body read, or raises ``APIConnectionError``.

    The aiohttp session is made on first use, inside the running loop, and closed by ``aclose()``.
    Redirects are never followed: the Basic credentials must not travel to another host.
    """

    def __init__(
        self,
        base_url: str,
        headers: Mapping[str, str],
        *,
        timeout: float,
        max_connections: int,
        max_body: int = DEFAULT_MAX_BODY,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be > 0 seconds")
        if max_connections < 1:
            raise ValueError("max_connections must be >= 1")
        self._base = base_url
        self._headers = dict(headers)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._max_connections = max_connections
        self._max_body = max_body
        self._session: aiohttp.ClientSession | None = None
        # Our own bound on requests in flight, waited on before the attempt's clock starts: time spent queueing
        # for a pooled connection is not the server's fault, and a request still queued has not been sent.
        self._slots = asyncio.Semaphore(max_connections)
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def _open(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("this SigmaClient is closed; make a new one")
        connector = aiohttp.TCPConnector(limit=self._max_connections, limit_per_host=0, ttl_dns_cache=300)
        self._session = aiohttp.ClientSession(
            headers=self._headers,
            timeout=self._timeout,
            connector=connector,
            # Env proxies would silently route credentials elsewhere; a user who wants one passes it explicitly.
            trust_env=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        # aiohttp silently sends an idempotent request a second time when the connection drops under it (a
        # stale pooled one, or a server that closed mid-answer). That extra attempt would not be counted by the
        # retry policy, and would turn "DELETE's answer was lost, the re-send got 404" into a plain 404 that
        # looks like a first attempt. There is no public switch; aiohttp's own test client flips this one, and
        # tests/test_transport.py fails loudly should an aiohttp upgrade rename it.
        self._session._retry_connection = False
        return self._session

    async def send(self, request: Request) -> Response:
        session = self._session or self._open()
        # A plain string, measured cheaper per call in aiohttp than a prebuilt yarl URL; the target is already
        # percent-encoded with valid escapes only, which yarl keeps as they are.
        url = self._base + request.target
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s %s", request.method, request.path)
        await self._slots.acquire()
        try:
            async with session.request(
                request.method,
                url,
                data=request.body,
                headers=_JSON_HEADERS if request.body is not None else None,
                allow_redirects=False,
            ) as resp:
                status = resp.status
                length = resp.content_length
                # Content-Length counts the compressed bytes; a compressed body is counted as it inflates.
                if length is not None and length <= self._max_body and "Content-Encoding" not in resp.headers:
                    body = await resp.read()
                else:
                    body = await self._read_capped(resp, length)
                if status < 300:
                    return Response(status, body)  # the hot path: no header is needed for a success
                headers = resp.headers
                return Response(
                    status,
                    body,
                    request_id=headers.get("X-Request-Id"),
                    retry_after=headers.get("Retry-After"),
                    location=_host_only(headers.get("Location")),
                )
        except aiohttp.ConnectionTimeoutError:
            # No connection within the timeout (connect or TLS handshake): nothing was written to the server.
            raise APITimeoutError(
                f"{request.method} {request.path}: no connection within {self._timeout.total}s",
                method=request.method, path=request.path, sent=False,
            ) from None
        except asyncio.TimeoutError:
            raise APITimeoutError(
                f"{request.method} {request.path}: no complete answer within {self._timeout.total}s",
                method=request.method, path=request.path,
            ) from None
        except aiohttp.ClientConnectorError as exc:
            # The TCP/TLS connection never opened: the server cannot have seen the request.
            raise APIConnectionError(
                f"{request.method} {request.path}: cannot connect to {exc.host}:{exc.port} ({exc.os_error})",
                method=request.method, path=request.path, sent=False,
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise APIConnectionError(
                f"{request.method} {request.path}: connection failed ({type(exc).__name__}: {exc})",
                method=request.method, path=request.path,
            ) from None
        finally:
            self._slots.release()

    async def _read_capped(self, resp: aiohttp.ClientResponse, length: int | None) -> bytes:
        too_big = ResponseDecodeError(
            f"HTTP {resp.status}: response larger than {self._max_body} bytes; not read", status_code=resp.status
        )
        body = await _read_at_most(resp, length, self._max_body)
        if body is None:
            raise too_big
        return body

    async def aclose(self) -> None:
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()


def _host_only(location: str | None) -> str | None:
    # A redirect target is named in errors by scheme and host only: its query could carry a token.
    if not location:
        return None
    try:
        u = URL(location)
    except ValueError:
        return "an unparseable location"
    return f"{u.scheme}://{u.host}" if u.host else "a relative location"


async def _read_at_most(resp: aiohttp.ClientResponse, length: int | None, limit: int) -> bytes | None:
    """The body, or None when it is larger than ``limit`` bytes (then read no further than that)."""
    if length is not None and length > limit:
        return None  # even compressed it is too big; identity or not, refuse before reading
    # Chunked, or compressed (a small body can inflate a thousandfold): count what comes out, stop at the cap.
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


# -- public resources, without credentials ---------------------------------------------------------------------

#: Largest playlist read (bytes). A live media playlist is a few KiB; past this something is wrong.
PLAYLIST_MAX_BODY: Final = 1024 * 1024


class FetchError(SigmaError):
    """A ``PublicReader.get`` that got no usable answer.

    ``reason`` is short and stable (``"timeout"``, ``"too large"``, ``"too many redirects"``, ``"unreachable"``);
    the message adds the detail.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason} ({detail})" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Fetched:
    """A ``PublicReader.get`` answer: the status, the URL reached after redirects, and the headers playback needs.

    ``body`` is read only for a 2xx answer (empty otherwise).
    """

    status: int
    url: str
    body: bytes
    last_modified: str | None = None
    date: str | None = None


class PublicReader:
    """GETs public resources (HLS playlists on a CDN) with no credentials of any kind.

    It has its own aiohttp session, connection pool and cap on requests in flight (``max_connections``), apart
    from the API's ``Transport``: it never sends ``Authorization``, ``X-App-Id`` or cookies, and never takes a
    turn in the API's request budget. Each GET is bounded: ``timeout`` seconds from first byte sent to last byte
    read (redirects included), ``read_timeout`` seconds of silence at most, ``max_body`` bytes (as inflated),
    ``max_redirects`` redirects (a CDN redirect is normal; a loop ends). Any failure is one ``FetchError``.
    """

    def __init__(
        self,
        *,
        timeout: float = 10.0,
        read_timeout: float = 5.0,
        max_body: int = PLAYLIST_MAX_BODY,
        max_redirects: int = 5,
        max_connections: int = 16,
    ) -> None:
        if not timeout > 0 or not read_timeout > 0:
            raise ValueError("timeout and read_timeout must be > 0 seconds")
        if max_connections < 1 or max_redirects < 0 or max_body < 1:
            raise ValueError("max_connections and max_body must be >= 1, max_redirects >= 0")
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_read=read_timeout)
        self._max_body = max_body
        self._max_redirects = max_redirects
        self._max_connections = max_connections
        self._slots = asyncio.Semaphore(max_connections)
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def _open(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("this reader is closed")
        self._session = aiohttp.ClientSession(
            headers={"User-Agent": USER_AGENT, "Accept": "application/vnd.apple.mpegurl, */*"},
            timeout=self._timeout,
            connector=aiohttp.TCPConnector(limit=self._max_connections, limit_per_host=0, ttl_dns_cache=300),
            trust_env=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        return self._session

    async def get(self, url: str) -> Fetched:
        """GET ``url``, following at most ``max_redirects`` redirects; ``FetchError`` for anything but an answer."""
        session = self._session or self._open()
        # Waiting for a slot is not the origin's fault: the clock of the timeout starts once one is ours.
        async with self._slots:
            try:
                async with session.get(url, allow_redirects=True, max_redirects=self._max_redirects) as resp:
                    headers = resp.headers
                    body = b""
                    if 200 <= resp.status < 300:
                        read = await _read_at_most(resp, resp.content_length, self._max_body)
                        if read is None:
                            raise FetchError("too large", f"over {self._max_body} bytes")
                        body = read
                    return Fetched(
                        resp.status, str(resp.url), body, headers.get("Last-Modified"), headers.get("Date")
                    )
            except aiohttp.TooManyRedirects:
                raise FetchError("too many redirects", f"more than {self._max_redirects}") from None
            except asyncio.TimeoutError:
                raise FetchError("timeout", f"no complete answer within {self._timeout.total:g} s") from None
            except (aiohttp.ClientError, OSError, ValueError) as exc:
                # ValueError: a URL (or a redirect's Location) that aiohttp cannot use.
                raise FetchError("unreachable", f"{type(exc).__name__}: {exc}") from None

    async def aclose(self) -> None:
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()
