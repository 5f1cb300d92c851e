"""Which reads the next poll of a session makes: pure planners, one per poll mode, tested without sockets."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, Literal, NamedTuple

from ..models import Event
from ._kinds import KindTable

__all__ = ["DEFAULT_STATUS_EVERY", "POLL_MODES", "PollMode", "ReadPlan", "SessionPlan", "check_poll_mode"]

PollMode = Literal["lean", "full", "feed", "auto"]
POLL_MODES: Final = ("lean", "full", "feed", "auto")

#: In lean mode the status is read at least every this many polls: a status change that no event announces is
#: seen within this many intervals.
DEFAULT_STATUS_EVERY: Final = 15

# Event kinds that move a session's status: when one arrives, the status is read in the same poll.
_LIFECYCLE: Final = frozenset({"initializing", "started", "live", "stopped"})


class ReadPlan(NamedTuple):
    status: bool
    events: bool


class SessionPlan:
    """The reads of each poll of one session.

    ``full`` reads the status and the events every poll. ``lean`` reads the events every poll (one request,
    usually a page of nothing new) and the status only on the first poll, when a new event announces a status
    change (initialize, start, stop: read in the same poll), and otherwise every ``status_every`` polls.
    After a terminal status only the events are read, once, to end the stream.
    """

    def __init__(self, mode: Literal["lean", "full"], *, status_every: int = DEFAULT_STATUS_EVERY) -> None:
        if status_every < 1:
            raise ValueError(f"status_every must be >= 1, got {status_every!r}")
        self.mode = mode
        self.status_every = status_every
        self._polls_since_status: int | None = None  # None: never read

    def first_reads(self, awaiting_final_events: bool) -> ReadPlan:
        """The reads that open the poll; ``then_status`` says whether the events read call for the status too."""
        if awaiting_final_events:
            return ReadPlan(status=False, events=True)
        due = (
            self.mode == "full"
            or self._polls_since_status is None
            or self._polls_since_status + 1 >= self.status_every
        )
        return ReadPlan(status=due, events=True)

    def then_status(self, fresh: Iterable[Event], table: KindTable) -> bool:
        """After the events of a poll without a status read: whether they announce a status change."""
        return any(table.kind_for_action(e.action) in _LIFECYCLE for e in fresh)

    def polled(self, read_status: bool) -> None:
        """Record a completed poll."""
        if read_status:
            self._polls_since_status = 0
        elif self._polls_since_status is not None:
            self._polls_since_status += 1


def check_poll_mode(poll: str, *, feed_allowed: bool) -> None:
    if poll not in POLL_MODES:
        raise ValueError(f"poll must be one of {', '.join(POLL_MODES)}; got {poll!r}")
    if poll == "feed" and not feed_allowed:
        raise ValueError('poll="feed" reads the whole app\'s events for many sessions at once: use it with monitor()')
