"""``poll="feed"``: one newest-first listing of the whole app's events per interval, routed to watched sessions.

The vendor page documents event listings filtered by one session; the same listing without ``q`` is not
documented, so the feed's first read is a probe: it checks that the server answers it (200, a page, newest
first). Only a definite answer refuses it; a 429, a 5xx or a dropped connection is retried like any read.
"""

from __future__ import annotations

import itertools
from typing import Final

from ..errors import APIStatusError, ResponseDecodeError, SigmaError, WatchError
from ..models import Event, Page
from ._window import ReadWindow, written

__all__ = ["DEFAULT_RESYNC", "FEED_PAGE_SIZE", "FeedRefused", "FeedView", "refuses_feed"]

#: Seconds between a fed session's own full reads (status and events): the safety net for what the feed
#: cannot show, such as a status that changes without an event.
DEFAULT_RESYNC: Final = 300.0
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
        return (400 <= status < 500 and status not in (401, 403, 408, 429)) or status in (501, 505)
    return False


class FeedView:
    """What the feed has read of the app-wide listing, and where each event goes."""

    __slots__ = ("probed", "window")

    def __init__(self) -> None:
        self.window = ReadWindow(limit=FEED_WINDOW_KEYS)
        self.probed = False

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
        """Note a pass's events as read; each session's share of them."""
        self.window.note_all(events)
        mine: dict[str, list[Event]] = {}
        for event in events:
            if event.session_id is not None:
                mine.setdefault(event.session_id, []).append(event)
        return mine
