"""Every event of the emulated app in ``(updatedAt, id)`` order: an app-wide listing page costs O(page)."""

from __future__ import annotations

import bisect
from datetime import datetime

from ..models import Event

__all__ = ["EventIndex"]


class EventIndex:
    """The events of all sessions, kept sorted by when they were last written.

    Events are usually written in time order, so adding one appends; an edit moves one event to the end.
    """

    def __init__(self) -> None:
        self._keys: list[tuple[datetime, str]] = []
        self._events: dict[str, Event] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, event: Event) -> None:
        key = _key(event)
        if not self._keys or key > self._keys[-1]:
            self._keys.append(key)
        else:
            bisect.insort(self._keys, key)
        self._events[event.id] = event

    def replace(self, old: Event, new: Event) -> None:
        """``new`` stands for ``old`` (same id, a later ``updatedAt``)."""
        index = bisect.bisect_left(self._keys, _key(old))
        if index < len(self._keys) and self._keys[index] == _key(old):
            del self._keys[index]
        self.add(new)

    def newest_first(self, page: int, per_page: int) -> list[Event]:
        """One page of the listing ``sort=updatedAt|desc``."""
        end = len(self._keys) - (page - 1) * per_page
        if end <= 0:
            return []
        return [self._events[key[1]] for key in reversed(self._keys[max(0, end - per_page) : end])]


def _key(event: Event) -> tuple[datetime, str]:
    return (event.updated_at or event.created_at, event.id)
