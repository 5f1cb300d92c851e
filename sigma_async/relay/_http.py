"""POST a body to a webhook receiver: the relay's own small HTTP client.

The one exception to "only ``_transport.py`` imports aiohttp", on purpose: ``_transport.Transport`` is the Sigma
API's transport, its pooled session carrying the API's ``Authorization`` and ``X-App-Id`` headers on every
request. Pointing it at a user's webhook would send those credentials to a third party; and its requests
have a fixed header set, where each delivery needs its own ``Sigma-Delivery-Id`` and ``Sigma-Signature``.
This module holds no credentials, follows no redirects and reads at most a short snippet of each answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Final, NamedTuple

import aiohttp
from yarl import URL

__all__ = ["Answer", "HttpPoster", "PostFailed", "redact_url"]

#: Bytes of a receiver's answer kept for the log; the rest is discarded unread.
_SNIPPET: Final = 200


class Answer(NamedTuple):
    """A receiver's answer: its status, the start of its body, and its ``Retry-After`` in seconds if any."""

    status: int
    snippet: str
    retry_after: float | None = None


class PostFailed(Exception):
    """No HTTP answer: the connection failed or timed out (``reason``: ``"timeout"`` or ``"connection"``).
    Always worth retrying."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class HttpPoster:
    """One pooled aiohttp session for POSTs; made on first use, closed by ``aclose()``."""

    def __init__(self, *, timeout: float = 10.0, max_connections: int = 100) -> None:
        if not timeout > 0:
            raise ValueError("timeout must be > 0 seconds")
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Answer:
        """POST ``body`` and read the start of the answer; ``PostFailed`` if there is no answer."""
        session = self._session or self._open()
        try:
            async with session.post(url, data=body, headers=dict(headers), allow_redirects=False) as resp:
                snippet = (await resp.content.read(_SNIPPET)).decode("utf-8", "replace")
                if resp.status < 300:
                    return Answer(resp.status, snippet)
                return Answer(resp.status, snippet, _seconds(resp.headers.get("Retry-After")))
        except asyncio.TimeoutError:
            raise PostFailed(
                f"no answer from {redact_url(url)} within {self._timeout.total}s", reason="timeout"
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            # The exception's own text can hold the full URL (a token in its query): name its type only.
            raise PostFailed(f"POST {redact_url(url)} failed: {type(exc).__name__}", reason="connection") from None

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=self._max_connections, limit_per_host=0)
        # trust_env=False: an environment proxy would silently route every record through a third party.
        self._session = aiohttp.ClientSession(
            timeout=self._timeout, connector=connector, trust_env=False, cookie_jar=aiohttp.DummyCookieJar()
        )
        return self._session

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


def _seconds(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` in seconds: delay-seconds or an HTTP date; anything else counts as no header."""
    if value is None:
        return None
    text = value.strip()
    # isascii first: str.isdigit() is True for "²" and other digits float() refuses.
    if text.isascii() and text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def redact_url(url: str) -> str:
    """The URL as logs show it: scheme, host, port and path, without user info or query (they may hold tokens)."""
    try:
        u = URL(url)
    except ValueError:
        return "an unparseable URL"
    port = f":{u.explicit_port}" if u.explicit_port else ""
    return f"{u.scheme}://{u.host}{port}{u.path}"
