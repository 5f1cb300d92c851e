"""What the scheduler holds per watched thing: small plain objects, no tasks, no I/O.

A watched session is its tracker, its plan, its claims and when it is next due: a few slotted objects, so
that a monitor of a hundred thousand sessions holds a few hundred thousand small objects and no task per
session.
"""

from __future__ import annotations

from ..errors import SigmaError
from ..models import Event, Session
from ._feed import FeedView
from ._listing import ChannelView
from ._plan import SessionPlan
from ._tracker import SessionTracker

__all__ = ["Item", "WatchedChannel", "WatchedFeed", "WatchedSession"]


class Item:
    """What every scheduled thing has: when it is due, whether a read of it is running, how it is failing."""

    __slots__ = ("alive", "busy", "due", "failures", "gen", "last_error", "last_ok")

    def __init__(self) -> None:
        self.alive = True
        self.busy = False  # a read of it is running
        self.due = 0.0
        self.gen = 0  # bumped at each (re)schedule: heap entries of an older generation are stale
        self.failures = 0
        self.last_ok = 0.0  # set by the scheduler, on its clock
        self.last_error: SigmaError | None = None

    @property
    def ident(self) -> str:
        raise NotImplementedError

    def succeeded(self, now: float) -> None:
        self.failures = 0
        self.last_ok = now
        self.last_error = None


class WatchedSession(Item):
    """One session: its tracker and plan, and who claims it (directly, and through which channels)."""

    __slots__ = ("channels", "direct", "next_resync", "pending", "plan", "row", "row_moved", "tracker")

    def __init__(self, tracker: SessionTracker, plan: SessionPlan, *, direct: bool, channel: str | None) -> None:
        super().__init__()
        self.tracker = tracker
        self.plan = plan
        self.direct = direct
        self.channels: set[str] = {channel} if channel is not None else set()
        self.row: Session | None = None  # its newest row in a channel's listing: status and startedAt
        self.row_moved = False
        self.pending: list[Event] = []  # events the feed routed here while a read of its own was running
        self.next_resync = 0.0

    @property
    def ident(self) -> str:
        return self.tracker.session_id

    @property
    def claimed(self) -> bool:
        return self.direct or bool(self.channels)

    @property
    def started(self) -> bool:
        """True once its first poll completed: before it, routed events wait, so that history comes first."""
        return self.plan.polls_since_status is not None or self.plan.polls_since_events is not None


class WatchedChannel(Item):
    """One channel: where its listing was read to; the sessions it claims are found by their ``channels``."""

    __slots__ = ("gone", "view")

    def __init__(self, view: ChannelView) -> None:
        super().__init__()
        self.view = view
        self.gone: SigmaError | None = None  # deleted: no more sessions; the error ends it once they ended

    @property
    def ident(self) -> str:
        return self.view.channel_id


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
