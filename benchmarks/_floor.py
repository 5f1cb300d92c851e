"""The floor: a minimal poller with one scheduler, sending the requests a watch sends, and nothing else.

One loop holds a heap of due times and starts each due read as a task; a read decodes its answer (msgspec into
the SDK's own structs), reports what changed and pushes its next due time. ``lean``: the newest events of each
session every interval (100 on the first read, 10 after), its status on the first read and every 15th; ``full``:
both every interval; ``feed``: every session's row from the app-wide sessions listing once, then the app-wide
events listing, newest first, paged back to what the last pass read, once per interval.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, Final
from urllib.parse import quote

import aiohttp
import msgspec

from sigma_async.models import Event, Page, Session, SessionStatus

from ._auth import API, auth_headers
from ._watchers import Note

__all__ = ["floor_watcher"]

_STATUS: Final = msgspec.json.Decoder(SessionStatus)
_EVENTS: Final = msgspec.json.Decoder(Page[Event])
_SESSIONS: Final = msgspec.json.Decoder(Page[Session])
_FAILED: Final = (aiohttp.ClientError, msgspec.DecodeError, TimeoutError)
_GRID: Final = 0.005  # due times this close together start in one wake-up, as the SDK's scheduler does
_STATUS_EVERY: Final = {"lean": 15, "full": 1}
#: The largest page the emulator serves: the feed reads as few pages as it can.
_BIG_PAGE: Final = 1000
#: How far behind the newest event read an id is still remembered, to tell a shifted page from new events.
_KEEP_SECONDS: Final = 30.0


@asynccontextmanager
async def floor_watcher(
    url: str, ids: list[str], interval: float, note: Note, max_connections: int, poll: str = "lean"
) -> AsyncIterator[None]:
    http = aiohttp.ClientSession(
        headers=auth_headers(), connector=aiohttp.TCPConnector(limit=max_connections),
        timeout=aiohttp.ClientTimeout(total=30), cookie_jar=aiohttp.DummyCookieJar(),
    )  # fmt: skip
    poller = (
        _Feed(http, url + API, ids, interval, note)
        if poll == "feed"
        else _Polls(http, url + API, ids, interval, note, _STATUS_EVERY[poll])
    )
    runner = asyncio.ensure_future(poller.run())
    try:
        yield
    finally:
        runner.cancel()
        reads = [runner, *poller.reads]
        for task in reads:
            task.cancel()
        await asyncio.gather(*reads, return_exceptions=True)
        await http.close()


class _Watched:
    __slots__ = ("events_url", "last", "polls", "sid", "status", "status_url")

    def __init__(self, base: str, sid: str) -> None:
        q = quote(json.dumps({"$and": [{"sessionId": sid}]}, separators=(",", ":")), safe="")
        self.sid = sid
        self.status_url = f"{base}/sessions/{sid}/status"
        self.events_url = f"{base}/events?q={q}&sort=updatedAt%7Cdesc&page=1&perPage="
        self.last: str | None = None
        self.status: str | None = None
        self.polls = 0


class _Polls:
    """Lean or full: one heap of (due, seq, session), one wake-up per due time, one task per read."""

    def __init__(self, http: aiohttp.ClientSession, base: str, ids: list[str], interval: float, note: Note,
                 status_every: int) -> None:  # fmt: skip
        self.http, self.interval, self.note, self.status_every = http, interval, note, status_every
        self.reads: set[asyncio.Task[None]] = set()
        self.seq = itertools.count()
        self.heap: list[tuple[float, int, _Watched]] = []
        self.base, self.ids = base, ids
        self.wake: asyncio.Future[None] | None = None
        self.wake_at = float("inf")

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        # First reads spread over one interval, as the monitor does.
        self.heap = [(now + random.uniform(0, self.interval), next(self.seq), _Watched(self.base, s)) for s in self.ids]
        heapq.heapify(self.heap)
        heap = self.heap
        while True:
            limit = loop.time() + _GRID
            while heap and heap[0][0] <= limit:
                task = loop.create_task(self.poll(heapq.heappop(heap)[2]))
                self.reads.add(task)
                task.add_done_callback(self.reads.discard)
            self.wake = loop.create_future()
            self.wake_at = heap[0][0] if heap else float("inf")
            handle = loop.call_at(self.wake_at, _set, self.wake) if heap else None
            await self.wake
            if handle is not None:
                handle.cancel()

    def due(self, watched: _Watched, at: float) -> None:
        heapq.heappush(self.heap, (at, next(self.seq), watched))
        if at < self.wake_at and self.wake is not None:
            _set(self.wake)

    async def poll(self, w: _Watched) -> None:
        loop = asyncio.get_running_loop()
        try:
            if w.polls % self.status_every == 0:
                async with self.http.get(w.status_url) as resp:
                    w.status = _STATUS.decode(await resp.read()).status
            async with self.http.get(w.events_url + ("10" if w.polls else "100")) as resp:
                page = _EVENTS.decode(await resp.read())
        except _FAILED:
            self.due(w, loop.time() + self.interval)
            return
        w.polls += 1
        newest = page.data[0].id if page.data else None
        if w.polls == 1:
            self.note(w.sid, "first")
        elif newest != w.last:
            self.note(w.sid, page.data[0].action if page.data else "changed")
        w.last = newest
        self.due(w, loop.time() + self.interval * random.uniform(0.9, 1.1))


class _Feed:
    """Feed: the app-wide listings, newest first, in the largest pages served."""

    def __init__(self, http: aiohttp.ClientSession, base: str, ids: list[str], interval: float, note: Note) -> None:
        self.http, self.base, self.interval, self.note = http, base, interval, note
        self.watched = set(ids)
        self.status: dict[str, str] = {}
        self.seen: dict[str, datetime] = {}  # event id -> updatedAt, within _KEEP_SECONDS of the mark
        self.mark: datetime | None = None
        self.prune_at = 4 * _BIG_PAGE
        self.reads: set[asyncio.Task[Any]] = set()

    async def get(self, decoder: msgspec.json.Decoder[Any], path: str) -> Any:
        async with self.http.get(self.base + path) as resp:
            return decoder.decode(await resp.read())

    def page_of(self, what: str, page: int) -> str:
        return f"/{what}?sort=updatedAt%7Cdesc&page={page}&perPage={_BIG_PAGE}"

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        await self.start()
        beat = loop.time()
        while True:
            beat = max(beat + self.interval, loop.time())
            await asyncio.sleep(beat - loop.time())
            try:
                await self.read_pass()
            except _FAILED:
                continue

    async def start(self) -> None:
        """Every watched session's row, once: its own frame, so that the pages it decoded go when it returns."""
        # The mark first: whatever is written while the rows are read is then read by the first pass.
        for event in (await self.get(_EVENTS, self.page_of("events", 1))).data:
            self.remember(event)
        first: Page[Session] = await self.get(_SESSIONS, self.page_of("sessions", 1))
        pages = -(-(first.total or 0) // _BIG_PAGE)
        rest = await asyncio.gather(*(self.get(_SESSIONS, self.page_of("sessions", p)) for p in range(2, pages + 1)))
        for page in [first, *rest]:
            for row in page.data:
                if row.id in self.watched and row.id not in self.status:
                    self.status[row.id] = row.status
                    self.note(row.id, "first")
        # Rows that moved between pages while they were read: each read on its own.
        missed = [sid for sid in self.watched if sid not in self.status]
        for sid, answer in zip(missed, await asyncio.gather(
            *(self.get(_STATUS, f"/sessions/{sid}/status") for sid in missed)), strict=True):  # fmt: skip
            self.status[sid] = answer.status
            self.note(sid, "first")

    async def read_pass(self) -> None:
        mark, fresh = self.mark, []
        for number in itertools.count(1):
            page: Page[Event] = await self.get(_EVENTS, self.page_of("events", number))
            for event in page.data:
                if event.id not in self.seen:
                    fresh.append(event)
                    self.remember(event)
            last = page.data[-1] if page.data else None
            if last is None or len(page.data) < _BIG_PAGE or (mark is not None and _at(last) < mark):
                break
        for event in reversed(fresh):  # oldest first, as they happened
            if event.session_id in self.watched:
                self.note(event.session_id, event.action)
        if self.mark is not None and len(self.seen) >= self.prune_at:  # amortised: when it has doubled
            floor = self.mark.timestamp() - _KEEP_SECONDS
            self.seen = {k: at for k, at in self.seen.items() if at.timestamp() >= floor}
            self.prune_at = max(4 * _BIG_PAGE, 2 * len(self.seen))

    def remember(self, event: Event) -> None:
        at = _at(event)
        self.seen[event.id] = at
        if self.mark is None or at > self.mark:
            self.mark = at


def _set(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _at(event: Event) -> datetime:
    return event.updated_at or event.created_at
