"""What a channel watch reads of its sessions listing, and which sessions are news: pure, no I/O.

The listing is sorted by ``updatedAt``, newest first, so every session that started, changed or ended since the
last read lies above the rows that have not changed since. Each poll reads whole pages down to one that ends in
such a row: however many sessions came and went between two polls, each is found. A session is news when it was
created after the newest one already taken up (the *horizon*, by ``createdAt``), or within ``LATE_WINDOW``
behind it without having been seen. As for events, rows and sessions within the window are told apart by id, not
by time alone: a session that opens after the server's clock stepped back is still found. So the memory of a
channel watch is its live sessions and those of the last two minutes, not a list of every session it finished.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Final

from ..models import Page, Session
from ._window import LATE_WINDOW

__all__ = ["BIG_PAGE", "SINCE_MARGIN", "ChannelView", "ListingRead"]

#: Rows asked for on a usual poll: the sessions that moved, and rows below them that did not.
FIRST_PAGE: Final = 10
#: Rows per page once more than the first page moved.
BIG_PAGE: Final = 100
#: Pages one read may take before it gives up on a listing that never ends.
MAX_PAGES: Final = 1_000
#: A new watch's first look takes up sessions opened up to this long before it began, too: a session that starts
#: and ends before the first look (a first read that failed, say) is news, even if the server's clock is behind.
SINCE_MARGIN: Final = timedelta(seconds=10)

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=timezone.utc)


class ChannelView:
    """Where a channel watch has read its listing to, and which sessions it has decided about.

    Without ``resume_after``, the first read (the *first look*) takes up the sessions that are not over, and those
    opened since ``since`` (when the watch began, less ``SINCE_MARGIN``): what came before is history. With it
    (the ``createdAt`` of the newest session the watch knew before a restart, from cursors; ``known``: sessions
    created at or before it that were taken up), the first read pages back to it and takes up every session
    created since, ended or not.
    """

    __slots__ = (
        "_resuming", "channel_id", "floor", "horizon", "known", "looked", "polls", "rows", "since", "top", "window",
    )  # fmt: skip

    def __init__(
        self,
        channel_id: str,
        *,
        since: datetime | None = None,
        resume_after: datetime | None = None,
        known: frozenset[str] = frozenset(),
        window: timedelta = LATE_WINDOW,
    ) -> None:
        self.channel_id = channel_id
        self.since = since - SINCE_MARGIN if since is not None else None
        self.window = window
        # Sessions created at or before the floor are history, or were taken up before a restart.
        self.floor = resume_after
        self.horizon = resume_after  # createdAt of the newest session decided about
        self.known: dict[str, datetime] = dict.fromkeys(known, resume_after or _EPOCH)  # decided, within the window
        self.top: datetime | None = None  # updatedAt of the newest row read
        self.rows: dict[str, datetime] = {}  # rows read within the window behind top: id -> updatedAt
        self.looked = False
        self._resuming = resume_after is not None
        self.polls = 0

    def start_read(self) -> ListingRead:
        return ListingRead(self, FIRST_PAGE if self.looked else BIG_PAGE)

    def check_due(self, every: int) -> bool:
        """Whether this poll should also read the channel itself (a deleted channel answers 404)."""
        return self.polls % every == 0

    def ends_read(self, row: Session, first_page: bool) -> bool:
        """True if a newest-first read can stop after a page that ends in this row: nothing below it is news."""
        updated = row.updated_at or row.created_at
        if updated is None:
            return False
        if not self.looked:
            if self._resuming:
                return self.floor is not None and updated <= self.floor
            # A first look reads its first page whole (the sessions of now), and on while rows are recent.
            return not first_page and self.since is not None and updated < self.since
        top = self.top
        if top is None:
            return False
        # Unchanged since it was read, or older than anything that can still be news.
        return self.rows.get(row.id) == updated or updated < top - self.window

    def sort_out(self, read: ListingRead, followed: Callable[[str], bool]) -> tuple[list[Session], list[Session]]:
        """After a read: the sessions to take up (oldest first) and the rows of followed sessions that moved."""
        rows = list(read.rows.values())
        new: list[Session] = []
        moved: list[Session] = []
        first_fresh = not self.looked and not self._resuming
        for row in rows:
            if followed(row.id):
                moved.append(row)
            elif first_fresh:
                if (row.status or "").strip().lower() != "ended" or self._since_start(row):
                    new.append(row)
            elif self._is_news(row):
                new.append(row)
        if first_fresh:
            stamps = [c for c in (_created(r) for r in rows) if c is not None]
            self.floor = self.horizon = max(stamps, default=_EPOCH)
            for row in rows:  # decided: taken up, or history
                self.known[row.id] = _created(row) or _EPOCH
        for row in new:
            created = _created(row) or _EPOCH
            self.known[row.id] = created
            if self.horizon is None or created > self.horizon:
                self.horizon = created
        self._note_rows(rows)
        self.looked = True
        self.polls += 1
        new.sort(key=lambda r: (_created(r) or _EPOCH, r.id))
        return new, moved

    def _since_start(self, row: Session) -> bool:
        # Opened after the watch began (its first look may have come late, after failures): news, even if over.
        created = _created(row)
        return self.since is not None and created is not None and created >= self.since

    def _is_news(self, row: Session) -> bool:
        if row.id in self.known:
            return False
        created = _created(row)
        if created is None:
            return True
        if self.floor is not None and created <= self.floor:
            return False
        return self.horizon is None or created >= self.horizon - self.window

    def _note_rows(self, rows: list[Session]) -> None:
        for row in rows:
            updated = row.updated_at or row.created_at
            if updated is None:
                continue
            self.rows[row.id] = updated
            if self.top is None or updated > self.top:
                self.top = updated
        # Only what lies within the window behind the newest can still be news or still be read again.
        if self.top is not None and len(self.rows) > 16:
            edge = self.top - self.window
            self.rows = {sid: at for sid, at in self.rows.items() if at >= edge}
        if self.horizon is not None and len(self.known) > 16:
            edge = self.horizon - self.window
            self.known = {sid: at for sid, at in self.known.items() if at >= edge}


class ListingRead:
    """One poll's read of the listing: which page to ask for next, and the rows it found, whole pages at a time."""

    __slots__ = ("_page", "_pages", "_size", "done", "rows", "view")

    def __init__(self, view: ChannelView, size: int) -> None:
        self.view = view
        self.rows: dict[str, Session] = {}
        self.done = False
        self._page, self._size, self._pages = 1, size, 0

    def next_page(self) -> tuple[int, int]:
        """``(page, per_page)`` of the next request; call only while not ``done``."""
        return self._page, self._size

    def take(self, page: Page[Session]) -> None:
        self._pages += 1
        rows = [row for row in page.data if row.id]
        for row in rows:
            self.rows.setdefault(row.id, row)
        served = page.per_page if page.per_page is not None and 0 < page.per_page < self._size else self._size
        # A short page is the only sure last one (a total may lie); else a page that ends in a row with nothing
        # new below it.
        last = len(page.data) < served or self._pages >= MAX_PAGES
        if last or (rows and self.view.ends_read(rows[-1], first_page=self._pages == 1)):
            self.done = True
        elif self._size < BIG_PAGE:
            self._page, self._size = 1, BIG_PAGE  # more than a page moved: read on in big pages from the top
        else:
            self._page += 1


def _created(row: Session) -> datetime | None:
    return row.created_at or row.updated_at
