"""The two watchers compared: ``client.monitor`` and a hand-written raw aiohttp poll loop (the floor)."""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Final
from urllib.parse import quote

import aiohttp
import anyio
import msgspec

from sigma_async import SigmaClient
from sigma_async.models import Event, Page, SessionStatus
from sigma_async.testing import DEFAULT_APP_ID, DEFAULT_SECRET_KEY, DEFAULT_USERNAME

from ._auth import API, auth_headers

__all__ = ["Control", "Note", "raw_watcher", "sdk_watcher"]

#: Called with (session id, kind) for every change a watcher reports.
Note = Callable[[str, str], None]

_STATUS: Final = msgspec.json.Decoder(SessionStatus)
_EVENTS: Final = msgspec.json.Decoder(Page[Event])


@asynccontextmanager
async def sdk_watcher(
    url: str, ids: list[str], interval: float, note: Note, max_connections: int, poll: str = "lean"
) -> AsyncIterator[None]:
    """``client.monitor(session_ids=ids, poll=poll)``, its transitions reported to ``note``, while the block runs."""
    client = SigmaClient(
        username=DEFAULT_USERNAME, secret_key=DEFAULT_SECRET_KEY, app_id=DEFAULT_APP_ID, base_url=url,
        max_connections=max_connections,
    )
    monitor = client.monitor(session_ids=ids, interval=interval, poll=poll)
    async with client, monitor, anyio.create_task_group() as tg:

        async def consume() -> None:
            async for transition in monitor:
                note(transition.session_id, transition.kind)

        tg.start_soon(consume)
        yield
        tg.cancel_scope.cancel()


@asynccontextmanager
async def raw_watcher(
    url: str, ids: list[str], interval: float, note: Note, max_connections: int, status_every: int = 1
) -> AsyncIterator[None]:
    """What a hand-written poller does and no more, a task per session: per session, the newest 10 events each
    interval and its status every ``status_every`` intervals (URLs built once), msgspec into the SDK's structs,
    and a report when either changed."""
    session = aiohttp.ClientSession(
        headers=auth_headers(),
        connector=aiohttp.TCPConnector(limit=max_connections),
        timeout=aiohttp.ClientTimeout(total=30),
        cookie_jar=aiohttp.DummyCookieJar(),
    )
    base = url + API

    async def poll(sid: str) -> None:
        q = quote(json.dumps({"$and": [{"sessionId": sid}]}, separators=(",", ":")), safe="")
        status_url = f"{base}/sessions/{sid}/status"
        events_url = f"{base}/events?q={q}&sort=updatedAt%7Cdesc&page=1&perPage=10"
        last: tuple[str, str | None] | None = None
        status = ""
        # First polls spread over one interval, as the monitor does.
        await anyio.sleep(random.uniform(0, interval))
        for polls in itertools.count():
            try:
                if polls % status_every == 0:
                    async with session.get(status_url) as resp:
                        status = _STATUS.decode(await resp.read()).status
                async with session.get(events_url) as resp:
                    page = _EVENTS.decode(await resp.read())
            except (aiohttp.ClientError, msgspec.DecodeError, TimeoutError):
                await anyio.sleep(interval)
                continue
            now = (status, page.data[0].id if page.data else None)
            if now != last:
                note(sid, status if last is not None else "first")
                last = now
            await anyio.sleep(interval * random.uniform(0.9, 1.1))

    try:
        async with anyio.create_task_group() as tg:
            for sid in ids:
                tg.start_soon(poll, sid)
            yield
            tg.cancel_scope.cancel()
    finally:
        await session.close()


class Control:
    """The emulator's benchmark routes (``benchmarks._emulator_server``), over a connection of their own."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._session = aiohttp.ClientSession(headers=auth_headers(), timeout=aiohttp.ClientTimeout(total=120))

    async def call(self, method: str, route: str, payload: object = None) -> Any:
        data = None if payload is None else msgspec.json.encode(payload)
        async with self._session.request(method, f"{self._url}/_control/{route}", data=data) as resp:
            body = await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"control {route}: HTTP {resp.status} {body[:200]!r}")
        return msgspec.json.decode(body)

    async def aclose(self) -> None:
        await self._session.close()
