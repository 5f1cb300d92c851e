"""What a channel watch reads of its sessions listing, and which sessions are news: pure, no I/O.

The listing is sorted by ``updatedAt``, newest first, so every session that started, changed or ended since the
last read lies above the first row that has not changed since. Each poll pages down to that row: however many
sessions came and went between two polls, each is found. A session is news when it was created after the newest
one already taken up (the *horizon*, by ``createdAt``): so the memory of a channel watch is its live sessions
and one timestamp, not a list of every session it ever finished.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Final

from ..models import Page, Session

__all__ = ["BIG_PAGE", "ChannelView", "ListingRead"]

#: Rows asked for on a usual poll: the session that moved, and the row below it that did not.
FIRST_PAGE: Final = 2
#: Rows a new channel watch looks at: its sessions of now (the live one is near the top: it changes most).
FIRST_LOOK: Final = 10
#: Rows per page once more than the first page moved.
BIG_PAGE: Final = 100
#: Pages one read may take before it gives up on a listing that never ends.
MAX_PAGES: Final = 1_000

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=timezone.utc)


class ChannelView:
    """Where a channel watch has read its listing to (``top``), and the newest session it took up (``horizon``).

    ``resume_after``: the ``createdAt`` of the newest session the watch knew before a restart (from cursors),
    ``known`` the sessions created at that instant; the first read then pages back to it and takes up every
    session created since, ended or not. Without it the
    first read takes up the sessions that are not over, and those opened since ``since`` (when the watch began):
what came before the watch is history.
    """

    __slots__ = (
        "_resuming", "channel_id", "horizon", "horizon_ids", "looked", "polls", "since", "top_at", "top_ids",
    )  # fmt: skip

    def __init__(
        self,
        channel_id: str,
        *,
        since: datetime | None = None,
        resume_after: datetime | None = None,
        known: frozenset[str] = frozenset(),
    ) -> None:
        self.channel_id = channel_id
        self.since = since
        self.top_at: datetime | None = None
        self.top_ids: set[str] = set()
        self.horizon = resume_after
        self.horizon_ids: set[str] = set(known)  # sessions created at the horizon that were taken up already
        self.looked = False
        self._resuming = resume_after is not None
        self.polls = 0

    def start_read(self) -> ListingRead:
        if not self.looked:
            return ListingRead(self, FIRST_LOOK if not self._resuming else BIG_PAGE, one_page=not self._resuming)
        return ListingRead(self, FIRST_PAGE, one_page=False)

    def check_due(self, every: int) -> bool:
        """Whether this poll should also read the channel itself (a deleted channel answers 404)."""
        return self.polls % every == 0

    def ends_read(self, row: Session) -> bool:
        """True if a newest-first read can stop at this row: nothing at or below it changed since the last read."""
        updated = row.updated_at or row.created_at
        if updated is None:
            return False
        if not self.looked:
            return self.horizon is not None and updated <= self.horizon
        top = self.top_at
        return top is not None and (updated < top or (updated == top and row.id in self.top_ids))

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
            created = [c for c in (_created(r) for r in rows) if c is not None]
            self._set_horizon(max(created, default=_EPOCH), rows)
        elif new:
            newest = max((c for c in (_created(r) for r in new) if c is not None), default=None)
            if newest is not None and (self.horizon is None or newest >= self.horizon):
                self._set_horizon(newest, new)
        self._note_top(rows)
        self.looked = True
        self.polls += 1
        new.sort(key=lambda r: (_created(r) or _EPOCH, r.id))
        return new, moved

    def _since_start(self, row: Session) -> bool:
        # Opened after the watch began (its first look may have come late, after failures): news, even if over.
        created = _created(row)
        return self.since is not None and created is not None and created >= self.since

    def _is_news(self, row: Session) -> bool:
        created = _created(row)
        horizon = self.horizon
        if horizon is None or created is None:
            return True
        return created > horizon or (created == horizon and row.id not in self.horizon_ids)

    def _set_horizon(self, at: datetime, rows: list[Session]) -> None:
        ids = {r.id for r in rows if _created(r) == at}
        if at == self.horizon:
            self.horizon_ids |= ids
        else:
            self.horizon, self.horizon_ids = at, ids

    def _note_top(self, rows: list[Session]) -> None:
        for row in rows:
            updated = row.updated_at or row.created_at
            if updated is None:
                continue
            if self.top_at is None or updated > self.top_at:
                self.top_at, self.top_ids = updated, {row.id}
            elif updated == self.top_at:
                self.top_ids.add(row.id)


class ListingRead:
    """One poll's read of the listing: which page to ask for next, and the rows above the point where it stopped."""

    __slots__ = ("_one_page", "_page", "_pages", "_size", "done", "rows", "view")

    def __init__(self, view: ChannelView, size: int, *, one_page: bool) -> None:
        self.view = view
        self.rows: dict[str, Session] = {}
        self.done = False
        self._page, self._size, self._one_page, self._pages = 1, size, one_page, 0

    def next_page(self) -> tuple[int, int]:
        """``(page, per_page)`` of the next request; call only while not ``done``."""
        return self._page, self._size

    def take(self, page: Page[Session]) -> None:
        self._pages += 1
        for row in page.data:
            if not row.id:
                continue
            if self.view.ends_read(row):
                self.done = True
                return
            self.rows.setdefault(row.id, row)
        served = page.per_page if page.per_page is not None and 0 < page.per_page < self._size else self._size
        last = len(page.data) < served or (page.total is not None and self._page * served >= page.total)
        if self._one_page or last or self._pages >= MAX_PAGES:
            self.done = True
        elif self._size < BIG_PAGE:
            self._page, self._size = 1, BIG_PAGE  # more than a few rows moved: read on in big pages from the top
        else:
            self._page += 1


def _created(row: Session) -> datetime | None:
    return row.created_at or row.updated_at
