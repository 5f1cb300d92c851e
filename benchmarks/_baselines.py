"""The three contenders, behind one shape: sigma-async, raw aiohttp + msgspec (the floor), httpx + pydantic."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

import aiohttp
import msgspec

from sigma_async import SigmaClient
from sigma_async.models import Channel, ChannelCreate, Page, Session
from sigma_async.testing import DEFAULT_APP_ID, DEFAULT_SECRET_KEY, DEFAULT_USERNAME

from ._auth import API, auth_headers

__all__ = ["CONTENDERS", "ENDPOINTS", "Contender", "RawClient", "open_contender"]

#: Contender names, in the order tables show them.
CONTENDERS: Final = ("sigma", "raw", "httpx")
#: The calls measured for throughput; each takes a channel id.
ENDPOINTS: Final = ("channels.get", "sessions.list")

Call = Callable[[str], Awaitable[Any]]


@dataclass
class Contender:
    """One client under test: ``calls[endpoint](channel_id)`` makes one call; ``close()`` releases it."""

    name: str
    calls: dict[str, Call]
    close: Callable[[], Awaitable[None]]


async def open_contender(name: str, base_url: str, *, max_connections: int) -> Contender:
    """Make a contender bound to ``base_url``, inside the running loop (aiohttp sessions belong to one loop)."""
    if name == "sigma":
        client = SigmaClient(
            username=DEFAULT_USERNAME, secret_key=DEFAULT_SECRET_KEY, app_id=DEFAULT_APP_ID,
            base_url=base_url, max_connections=max_connections,
        )
        # Bound methods, called as a user calls them: no adapter layer in between.
        calls: dict[str, Call] = {"channels.get": client.channels.get, "sessions.list": client.sessions.list}
        return Contender(name, calls, client.aclose)
    if name == "raw":
        raw = RawClient(base_url, max_connections=max_connections)
        return Contender(name, {"channels.get": raw.get_channel, "sessions.list": raw.list_sessions}, raw.aclose)
    if name == "httpx":
        from ._httpx_client import HttpxClient  # httpx and pydantic only when this contender is asked for

        hx = HttpxClient(base_url, max_connections=max_connections)
        return Contender(name, {"channels.get": hx.get_channel, "sessions.list": hx.list_sessions}, hx.aclose)
    raise ValueError(f"unknown contender {name!r}; choose from {', '.join(CONTENDERS)}")


_CHANNEL: Final = msgspec.json.Decoder(Channel)
_SESSION_PAGE: Final = msgspec.json.Decoder(Page[Session])
_ENCODER: Final = msgspec.json.Encoder()
_JSON_BODY: Final = {"Content-Type": "application/json"}


class RawClient:
    """What a careful hand-written client does, and no more: one aiohttp session, f-string URLs, msgspec.

    It decodes into the SDK's own structs, so the difference to sigma-async is the SDK's own per-call work.
    """

    def __init__(self, base_url: str, *, max_connections: int) -> None:
        self._base = base_url + API
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        self._session = aiohttp.ClientSession(
            headers=auth_headers(),
            connector=aiohttp.TCPConnector(limit=self._max_connections),
            timeout=aiohttp.ClientTimeout(total=30),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        return self._session

    async def get_channel(self, channel_id: str) -> Channel:
        session = self._session or self._open()
        async with session.get(f"{self._base}/channels/{channel_id}") as resp:
            body = await resp.read()
            _check(resp.status, body)
        return _CHANNEL.decode(body)

    async def list_sessions(self, channel_id: str, page: int = 1, per_page: int = 100) -> Page[Session]:
        session = self._session or self._open()
        q = quote(json.dumps({"channelId": channel_id}, separators=(",", ":")), safe="")
        url = f"{self._base}/sessions?q={q}&sort=updatedAt%7Cdesc&page={page}&perPage={per_page}"
        async with session.get(url) as resp:
            body = await resp.read()
            _check(resp.status, body)
        return _SESSION_PAGE.decode(body)

    async def create_channel(self, spec: ChannelCreate) -> Channel:
        session = self._session or self._open()
        data = _ENCODER.encode(spec.to_body())
        async with session.post(f"{self._base}/channels", data=data, headers=_JSON_BODY) as resp:
            body = await resp.read()
            _check(resp.status, body)
        return _CHANNEL.decode(body)

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


def _check(status: int, body: bytes) -> None:
    if status >= 400:
        raise RuntimeError(f"HTTP {status}: {body[:200]!r}")
