"""What a newest-first events listing has shown so far: the read mark, and the ids read within a window behind it.

An event is "read" when its id was read within the window, or when it was written before the window began.
Deciding by id, not by the mark alone, is what catches an event the server lists late: one that becomes visible
after a newer one, a page listed out of order, events written after the server's clock stepped back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Final

import msgspec

from ..models import Event

__all__ = ["LATE_WINDOW", "ReadWindow", "event_key", "read_order", "written"]

#: How far behind the newest event read (its ``updatedAt``) an event listed late is still caught.
LATE_WINDOW: Final = timedelta(seconds=120)


def written(event: Event) -> datetime:
    """When the listing places an event: its ``updatedAt`` (``createdAt`` if absent)."""
    return event.updated_at or event.created_at


def read_order(event: Event) -> tuple[datetime, str]:
    """Where an event stands in the order it was written: ``updatedAt``, then id."""
    return (event.updated_at or event.created_at, event.id)


def event_key(event_id: str) -> int:
    """A stable 64-bit key of an event id: what the window and cursors keep instead of the id itself.

    Stable across processes (unlike ``hash``), so a cursor can carry it; 64 bits, so that even the app-wide
    feed's window of a hundred thousand ids has no collision in practice (about 1 in 10^9).
    """
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "big")


class ReadWindow(msgspec.Struct, kw_only=True, gc=False):
    """The mark (``updatedAt`` of the newest event read) and the keys of the events read within ``span`` of it.

    ``limit`` caps the keys kept (the newest are kept): the app-wide feed sets it, a session's window is small.
    A struct the cyclic GC does not track: it holds numbers and times only, and there is one per watched session.
    """

    span: timedelta = LATE_WINDOW
    limit: int | None = None
    mark: datetime | None = None
    _seen: dict[int, datetime] = msgspec.field(default_factory=dict)
    _prune_at: int = 64

    def __len__(self) -> int:
        return len(self._seen)

    @property
    def floor(self) -> datetime | None:
        """Events written before this count as read whatever their id: the window's far edge."""
        return None if self.mark is None else self.mark - self.span

    def is_past(self, event: Event) -> bool:
        """True if the event lies behind the window: too old to tell by its id, so taken as read."""
        return self.mark is not None and written(event) < self.mark - self.span

    def knows(self, event: Event) -> bool:
        """True if this event's id was read within the window."""
        return event_key(event.id) in self._seen

    def has_read(self, event: Event) -> bool:
        return self.knows(event) or self.is_past(event)

    def note(self, event: Event) -> None:
        self.note_key(event_key(event.id), written(event))

    def note_all(self, events: Iterable[Event]) -> None:
        for event in events:
            self.note(event)

    def note_key(self, key: int, at: datetime) -> None:
        seen = self._seen
        old = seen.get(key)
        if old is None or at > old:
            seen[key] = at
        if self.mark is None or at > self.mark:
            self.mark = at
        if len(seen) >= self._prune_at:
            self._prune()

    def newest_keys(self, n: int) -> list[tuple[int, datetime]]:
        """The ``n`` keys read most recently (by the time they were written), newest first: what a cursor keeps."""
        return sorted(self._seen.items(), key=lambda item: (item[1], item[0]), reverse=True)[:n]

    def _prune(self) -> None:
        floor = self.floor
        seen = {k: at for k, at in self._seen.items() if floor is None or at >= floor}
        if self.limit is not None and len(seen) > self.limit:
            seen = dict(sorted(seen.items(), key=lambda item: item[1], reverse=True)[: self.limit])
        self._seen = seen
        # Amortised: pruning costs O(n), so it runs again only once the window has doubled.
        self._prune_at = max(64, 2 * len(seen))
