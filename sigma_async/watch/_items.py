"""What the scheduler holds per watched thing: small plain objects, no tasks, no I/O.

A watched session is its tracker, its plan, its claims and when it is next due: a few slotted objects, so
that a monitor of a hundred thousand sessions holds a few hundred thousand small objects and no task per
session.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from ..errors import SigmaError
from ..models import Event, Session
from ..playback import PlaybackWatch
from ._feed import FeedView
from ._listing import ChannelView
from ._plan import SessionPlan
from ._tracker import SessionTracker

__all__ = ["Item", "Row", "WatchedChannel", "WatchedFeed", "WatchedOutput", "WatchedSession"]


class Row(msgspec.Struct, frozen=True, gc=False):
    """What a watch keeps of a session's row in a listing. Not the ``Session`` itself: its channel, client info
    and lists are about 1.5 KB and a dozen objects for the collector, most of a fed session's memory."""

    id: str
    status: str | None
    created_at: datetime | None
    updated_at: datetime | None
    started_at: datetime | None

    @classmethod
    def of(cls, session: Session) -> Row:
        return cls(session.id, session.status, session.created_at, session.updated_at, session.started_at)


class Item:
    """What every scheduled thing has: its entry on the heap, whether a read of it is running, how it is failing."""

    __slots__ = ("alive", "busy", "failures", "last_error", "last_ok", "seq")

    def __init__(self) -> None:
        self.alive = True
        self.busy = False  # a read of it is running
        self.seq = -1  # the seq of its current entry on the scheduler's heap: an entry of another seq is stale
        self.failures = 0
        self.last_ok = 0.0  # set by the scheduler, on its clock
        self.last_error: SigmaError | None = None

    @property
    def ident(self) -> str:
        raise NotImplementedError

    @property
    def what(self) -> str:
        """What it is, for a log line or an error: ``session X``, ``channel X``..."""
        raise NotImplementedError

    def succeeded(self, now: float) -> None:
        self.failures = 0
        self.last_ok = now
        self.last_error = None


class WatchedSession(Item):
    """One session: its tracker and plan, and who claims it (directly, and through which channels)."""

    __slots__ = (
        "catch_up_after", "channels", "direct", "next_resync", "output", "pending", "plan", "row", "row_at",
        "row_moved", "tracker",
    )  # fmt: skip

    def __init__(self, tracker: SessionTracker, plan: SessionPlan, *, direct: bool, channel: str | None) -> None:
        super().__init__()
        self.tracker = tracker
        self.plan = plan
        self.direct = direct
        # A tuple, not a set: a session has a claim or two, and a tuple of strings is not tracked by the GC.
        self.channels: tuple[str, ...] = (channel,) if channel is not None else ()
        self.row: Row | None = None  # its newest row in a listing: status and startedAt
        self.row_at: datetime | None = None  # when the listing answered with that row
        self.row_moved = False
        self.pending: list[Event] | None = None  # events the feed routed here while its own read was running
        self.next_resync = 0.0
        # Fed: the feed has a gap for it up to this (wall) time: an events read of its own that began then or later
        # must come first, and what the feed routes meanwhile waits for it.
        self.catch_up_after: datetime | None = None
        self.output: WatchedOutput | None = None  # its HLS output's watch, with playback=True, once on air

    @property
    def ident(self) -> str:
        return self.tracker.session_id

    @property
    def what(self) -> str:
        return f"session {self.ident}"

    @property
    def claimed(self) -> bool:
        return self.direct or bool(self.channels)

    @property
    def catching_up(self) -> bool:
        return self.catch_up_after is not None

    @property
    def started(self) -> bool:
        """True once its first poll completed: before it, routed events wait, so that history comes first."""
        return self.plan.polls_since_status is not None or self.plan.polls_since_events is not None


class WatchedChannel(Item):
    """One channel: where its listing was read to; the sessions it claims are found by their ``channels``."""

    __slots__ = ("gone", "read_began", "view")

    def __init__(self, view: ChannelView) -> None:
        super().__init__()
        self.view = view
        self.read_began = float("-inf")  # when its last good read began
        self.gone: SigmaError | None = None  # deleted: no more sessions; the error ends it once they ended

    @property
    def ident(self) -> str:
        return self.view.channel_id

    @property
    def what(self) -> str:
        return f"channel {self.ident}"


class WatchedFeed(Item):
    """The app-wide feed: its view, and the beat it reads on."""

    __slots__ = ("beat", "view")

    def __init__(self) -> None:
        super().__init__()
        self.view = FeedView()
        self.beat = 0.0

    @property
    def ident(self) -> str:
        return "feed"

    @property
    def what(self) -> str:
        return "app-wide event feed"


class WatchedOutput(Item):
    """A session's HLS output (playback health): its ``PlaybackWatch`` once its URL is known, and the counts
    that make the ids of its transitions."""

    __slots__ = ("follower", "resumes", "session", "stalls")

    def __init__(self, session: WatchedSession) -> None:
        super().__init__()
        self.session = session
        self.follower: PlaybackWatch | None = None
        self.stalls = 0
        self.resumes = 0

    @property
    def ident(self) -> str:
        return self.session.ident

    @property
    def what(self) -> str:
        return f"playback of session {self.ident}"
