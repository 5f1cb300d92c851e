"""``poll="feed"``: one newest-first listing of the whole app's events per interval, routed to watched sessions.

The vendor page documents event listings filtered by one session; the same listing without ``q`` is not
documented, so a probe at start checks that the server answers it (200, a page, newest first).
"""

from __future__ import annotations

import itertools
import logging
import random
import time
from collections.abc import AsyncGenerator
from datetime import datetime, timezone
from typing import Final

import anyio

from ..errors import SigmaError, WatchError
from ..models import Event, Page
from ..transitions import Transition
from ._api import WatchClient
from ._plan import SessionPlan
from ._reads import FAILED, FIRST_PAGE_SIZE, Outage, read_back
from ._session import poll_session
from ._tracker import ReadMark, SessionTracker, read_order

__all__ = ["DEFAULT_RESYNC", "Feed", "FeedRefused", "watch_fed_session"]

logger = logging.getLogger("sigma_async")

#: Seconds between a fed session's own full reads (status and events): the safety net for what the feed
#: cannot show, such as a status that changes without an event.
DEFAULT_RESYNC: Final = 300.0


class FeedRefused(WatchError):
    """The server does not serve app-wide event listings (the probe of ``poll="feed"`` failed)."""


class Inbox:
    """Events the feed routed to one session, and a flag that wakes its watch."""

    __slots__ = ("events", "wake")

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.wake = anyio.Event()

    def put(self, events: list[Event]) -> None:
        self.events.extend(events)
        self.wake.set()

    def take(self) -> list[Event]:
        events, self.events = self.events, []
        self.wake = anyio.Event()
        return events


class Feed:
    """Reads the app's newest events every interval and hands each watched session its own.

    A session subscribes before its first full read, so that every event written after that read reaches it
    through the feed; what both bring is dropped by its tracker.
    """

    def __init__(self, client: WatchClient, interval: float) -> None:
        self.client = client
        self.interval = interval
        self.mark = ReadMark()
        self.inboxes: dict[str, Inbox] = {}
        self.polls = 0

    def subscribe(self, session_id: str) -> Inbox:
        return self.inboxes.setdefault(session_id, Inbox())

    def unsubscribe(self, session_id: str) -> None:
        self.inboxes.pop(session_id, None)

    async def probe(self) -> None:
        """Raise ``FeedRefused`` unless the server serves the app-wide listing, newest first."""
        try:
            page = await self.client.events.list_app(page=1, per_page=FIRST_PAGE_SIZE)
        except SigmaError as exc:
            raise FeedRefused(f"the server does not serve app-wide event listings ({exc})") from exc
        stamps = [read_order(e)[0] for e in page.data]
        if any(a < b for a, b in itertools.pairwise(stamps)):
            raise FeedRefused("the server's app-wide event listing is not newest first")
        # History before the watch started is read by each session's own first read, not by the feed.
        self.mark.note_all(page.data)

    async def run(self, *, max_silence: float | None = None) -> None:
        """Poll for ever, after ``probe``; transient failures back off (see ``Outage``)."""
        outage = Outage("app-wide event feed", self.interval, max_silence)
        # One poller: no jitter to spread, and a fixed beat, so that the time a read takes does not add to the
        # lag of the next one.
        due = time.monotonic()
        while True:
            due = max(due + self.interval, time.monotonic())
            await anyio.sleep(max(0.0, due - time.monotonic()))  # behind the beat: read again at once
            events = await outage.attempt(
                lambda: read_back(self._fetch, self.mark.is_before, FIRST_PAGE_SIZE, "the feed")
            )
            if events is FAILED:
                continue
            self.polls += 1
            self.route(events)

    def route(self, events: list[Event]) -> None:
        """Hand each watched session its events of this read (complete back to the feed's mark)."""
        self.mark.note_all(events)
        mine: dict[str, list[Event]] = {}
        for event in events:
            if event.session_id is not None and event.session_id in self.inboxes:
                mine.setdefault(event.session_id, []).append(event)
        for session_id, batch in mine.items():
            self.inboxes[session_id].put(batch)

    async def _fetch(self, page: int, per_page: int) -> Page[Event]:
        return await self.client.events.list_app(page=page, per_page=per_page)


async def watch_fed_session(
    client: WatchClient,
    tracker: SessionTracker,
    feed: Feed,
    *,
    interval: float,
    resync: float = DEFAULT_RESYNC,
    max_silence: float | None = None,
    first_delay: float = 0.0,
) -> AsyncGenerator[Transition, None]:
    """One session's transitions from the feed: a full read first and every ``resync`` seconds, the status read
    only when an event announces a change, and after a terminal status one final events read an interval on."""
    inbox = feed.subscribe(tracker.session_id)
    outage = Outage(f"session {tracker.session_id}", interval, max_silence)
    full = SessionPlan("full")
    lean = SessionPlan("lean")
    try:
        if tracker.ended:
            return
        if first_delay > 0:
            await anyio.sleep(first_delay)
        next_resync = 0.0  # the first read is a full one
        while True:
            now = time.monotonic()
            if tracker.awaiting_final_events:
                await anyio.sleep(interval)
                reads: tuple[str | None, list[Event], bool] | None = None
            elif now >= next_resync:
                reads = None
            else:
                with anyio.move_on_after(next_resync - now):
                    await inbox.wake.wait()
                if time.monotonic() < next_resync:
                    events = inbox.take()
                    fresh = [e for e in events if not tracker.is_seen(e)]
                    if not fresh:
                        continue
                    status = None
                    if lean.then_status(fresh, tracker.table):
                        status = await _status(client, tracker, outage)
                    reads = (status, events, status is not None)
            if reads is None:
                # A full read: the first, a resync, or the final read after a terminal status.
                inbox.take()  # whatever the feed brought is in this read too (it subscribed before it)
                full_reads = await outage.attempt(lambda: poll_session(client, tracker, full))
                if full_reads is FAILED:
                    continue
                reads = full_reads
                next_resync = time.monotonic() + resync * random.uniform(0.9, 1.1)
            status, events, _ = reads
            for transition in tracker.feed(status, events, datetime.now(timezone.utc)):
                yield transition
            if tracker.ended:
                return
    finally:
        feed.unsubscribe(tracker.session_id)


async def _status(client: WatchClient, tracker: SessionTracker, outage: Outage) -> str | None:
    try:
        status = (await client.sessions.status(tracker.session_id)).status
    except SigmaError as exc:
        outage.delay_after(exc)  # fatal errors raise; a transient one leaves the status to the next read
        return None
    outage.end()
    return status

