"""``poll="feed"``: one newest-first listing of the whole app's events per interval, routed to watched sessions.

The vendor page documents event listings filtered by one session; the same listing without ``q`` is not
documented, so the feed's first read is a probe: it checks that the server answers it (200, a page, newest
first). Only a definite answer refuses it; a 429, a 5xx or a dropped connection is retried like any read.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import datetime
from typing import Final

from ..errors import APIStatusError, ResponseDecodeError, SigmaError, WatchError
from ..models import Event, Page, Session
from ._window import ReadWindow, written

__all__ = ["DEFAULT_RESYNC", "FEED_PAGE_SIZE", "RESYNC_RATE", "FeedRefused", "FeedView", "refuses_feed"]

#: Seconds between a fed session's own full reads (status and events): the safety net for what the feed
#: cannot show, such as a status that changes without an event.
DEFAULT_RESYNC: Final = 300.0
#: Without an explicit ``resync=``, the period stretches past ``DEFAULT_RESYNC`` so that a monitor's resyncs stay
#: under this many reads a second: at 100,000 sessions, 300 s would be 333 a second, most of the client's CPU and
#: more than a vendor's budget, for a net that the feed's own reads rarely leave anything in.
RESYNC_RATE: Final = 100.0
#: Events per page of the app-wide listing.
FEED_PAGE_SIZE: Final = 1000
#: Event keys the feed keeps to tell what it has read: many passes' worth, a few megabytes at most.
FEED_WINDOW_KEYS: Final = 50_000


class FeedRefused(WatchError):
    """The server does not serve app-wide event listings: refused at the probe, or later."""


def refuses_feed(exc: SigmaError) -> bool:
    """True for a definite "no" to the app-wide listing (a client error, a body that is not a page); False for
    what passes (429, 408, 5xx, connection failures), which is retried like any read."""
    if isinstance(exc, ResponseDecodeError):
        return True
    if isinstance(exc, APIStatusError):
        status = exc.status_code
        # 403 here is "not for this app", not bad credentials (those are 401, and the sessions' own reads say so).
        return (400 <= status < 500 and status not in (401, 408, 429)) or status in (501, 505)
    return False


class FeedView:
    """What the feed has read of the app-wide listings, and where each event goes.

    Two listings, newest ``updatedAt`` first: the events (``window``: read by id within the late window), and the
    sessions, whose rows carry each session's status (``rows``: None until tried, False if the server refuses
    it; ``rows_at``/``rows_ids``: the newest row read, and the rows read at that instant).
    """

    __slots__ = ("probed", "rows", "rows_at", "rows_failures", "rows_ids", "window")

    def __init__(self) -> None:
        self.window = ReadWindow(limit=FEED_WINDOW_KEYS)
        self.probed = False
        self.rows: bool | None = None
        self.rows_failures = 0  # passes in a row whose sessions listing failed
        self.rows_at: datetime | None = None
        self.rows_ids: set[str] = set()

    def ends_rows(self, row: Session) -> bool:
        """True if a read of the sessions listing can stop at this row: nothing at or below it changed since."""
        updated = row.updated_at or row.created_at
        top = self.rows_at
        if top is None or updated is None:
            return False
        return updated < top or (updated == top and row.id in self.rows_ids)

    def note_rows(self, rows: Iterable[Session]) -> None:
        for row in rows:
            updated = row.updated_at or row.created_at
            if updated is None:
                continue
            if self.rows_at is None or updated > self.rows_at:
                self.rows_at, self.rows_ids = updated, {row.id}
            elif updated == self.rows_at:
                self.rows_ids.add(row.id)

    def ends_read(self, event: Event) -> bool:
        """True if a read can stop after a page ending in this event: read on an earlier pass and written before
        the newest event read (events sharing that instant may be listed in any order), or behind the window."""
        window = self.window
        if window.is_past(event):
            return True
        return window.mark is not None and written(event) < window.mark and window.knows(event)

    def check_probe(self, page: Page[Event]) -> None:
        """Raise ``FeedRefused`` unless the probe's page is newest first; note it as read."""
        stamps = [written(e) for e in page.data]
        if any(a < b for a, b in itertools.pairwise(stamps)):
            raise FeedRefused("the server's app-wide event listing is not newest first")
        # History before the watch started is read by each session's own first read, not by the feed.
        self.window.note_all(page.data)
        self.probed = True

    def take(self, events: list[Event]) -> dict[str, list[Event]]:
        """Note a pass's events as read; each session's share of them. ``FeedRefused`` if the listing is no longer
        newest first: most of its neighbours in order oldest first (one event out of place is a late one)."""
        stamps = [written(e) for e in events]
        pairs = len(stamps) - 1
        if pairs >= 4 and sum(a < b for a, b in itertools.pairwise(stamps)) > pairs // 2:
            raise FeedRefused("the server's app-wide event listing is no longer newest first")
        self.window.note_all(events)
        mine: dict[str, list[Event]] = {}
        for event in events:
            if event.session_id is not None:
                mine.setdefault(event.session_id, []).append(event)
        return mine
