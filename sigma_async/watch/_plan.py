"""Which reads a watched session's next poll makes, and when: pure planners, one rule set per poll mode.

The scheduler does the I/O; these decide. A session is polled in one of three ways:

- ``full``: its status and its events, every interval.
- ``lean``: its events every interval (usually one small page saying nothing is new); its status on the first
  poll, every poll until it is seen on air, on the poll after an event announced a status change, and at least
  every ``status_every`` polls. A session reached only through a lean channel reads no status at all (its row in
  the channel's sessions listing carries it, read every interval by the channel) and reads its events only when
  that row moved, and at least every ``status_every`` intervals.
- ``fed``: its events come from the app-wide feed; it reads its status when an event announces a change, its
  events when a held step is due, and both on its first poll and every ``resync`` seconds.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, Literal, NamedTuple

import msgspec

from ..models import Event
from ._kinds import KindTable
from ._tracker import SessionTracker

__all__ = ["DEFAULT_STATUS_EVERY", "POLL_MODES", "PollMode", "ReadPlan", "SessionPlan", "announces", "check_poll_mode"]

PollMode = Literal["lean", "full", "feed", "auto"]
POLL_MODES: Final = ("lean", "full", "feed", "auto")

#: In lean mode the status is read at least every this many polls: a status change that no event announces is
#: seen within this many intervals.
DEFAULT_STATUS_EVERY: Final = 15

# Event kinds that move a session's status: when one arrives, the next poll reads the status too.
_LIFECYCLE: Final = frozenset({"initializing", "started", "live", "stopped"})

Mode = Literal["lean", "full", "fed"]


class ReadPlan(NamedTuple):
    """The reads of one poll. The status, when read, is always read first: what it shows is then never newer than
    the events read after it."""

    status: bool
    events: bool


NOTHING: Final = ReadPlan(status=False, events=False)


class SessionPlan(msgspec.Struct, gc=False):
    """The reads of each poll of one watched session (see the module's docstring for the rules).

    A struct the cyclic GC does not track (it holds only numbers and strings): one object fewer per watched
    session for every collection to walk."""

    mode: Mode
    status_every: int = DEFAULT_STATUS_EVERY
    #: A listing's row carries the status (a lean channel's, or the feed's app-wide sessions listing), so no
    #: status read of its own.
    by_row: bool = False
    announced: bool = False  # the last events announced a status change
    polls_since_status: int | None = None  # None: never read
    polls_since_events: int | None = None

    def __post_init__(self) -> None:
        if self.status_every < 1:
            raise ValueError(f"status_every must be >= 1, got {self.status_every!r}")

    def reads(self, tracker: SessionTracker, *, resync: bool = False) -> ReadPlan:
        """The reads of the poll about to start; ``resync``: a fed session's own full read is due."""
        if tracker.ended:
            return NOTHING
        final = tracker.awaiting_final_events or tracker.release_at is not None
        if self.mode == "full":
            return ReadPlan(status=not tracker.awaiting_final_events, events=True)
        if self.mode == "fed":
            # by_row: the feed reads the app-wide sessions listing too, whose rows bring the status.
            first = self.polls_since_events is None
            if first or resync:
                return ReadPlan(status=not tracker.awaiting_final_events and (first or not self.by_row), events=True)
            return ReadPlan(status=self.announced and not final and not self.by_row, events=final)
        if self.by_row:
            # Polled only when its row moved, when a held step is due, and every status_every intervals.
            return ReadPlan(status=False, events=True)
        status_due = (
            self.polls_since_status is None
            or not tracker.live
            or self.announced
            or self.polls_since_status + 1 >= self.status_every
        )
        return ReadPlan(status=status_due and not tracker.awaiting_final_events, events=True)

    def polled(self, plan: ReadPlan, fresh: Iterable[Event], table: KindTable) -> None:
        """Record a completed poll and the events that were new in it."""
        if plan.status:
            self.polls_since_status = 0
        elif self.polls_since_status is not None:
            self.polls_since_status += 1
        if plan.events:
            self.polls_since_events = 0
        elif self.polls_since_events is not None:
            self.polls_since_events += 1
        self.announced = announces(fresh, table) or (self.announced and not plan.status)


def announces(events: Iterable[Event], table: KindTable) -> bool:
    """Whether these events announce a status change (initialize, start, stop, an on-air event)."""
    return any(table.kind_for_action(e.action) in _LIFECYCLE for e in events)


def check_poll_mode(poll: str, *, feed_allowed: bool) -> None:
    if poll not in POLL_MODES:
        raise ValueError(f"poll must be one of {', '.join(POLL_MODES)}; got {poll!r}")
    if poll == "feed" and not feed_allowed:
        raise ValueError('poll="feed" reads the whole app\'s events for many sessions at once: use it with monitor()')
