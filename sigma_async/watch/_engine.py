"""The engine behind every watcher: who claims which session, and what a read of a session or a channel does.

``watch_session``, ``watch_channel``, ``wait_for`` and ``Monitor`` all run one ``Engine``. The loop itself is
``Scheduler``'s; a followed channel's reads are in ``_channel_reads``, the app-wide feed's in ``_fed``, playback
health's in ``_outputs``.
"""

from __future__ import annotations

import random
from collections.abc import Coroutine, Mapping
from datetime import datetime
from typing import Any

from ..errors import SigmaError
from ..models import Event
from ..transitions import Transition
from . import _channel_reads, _fed, _outputs
from ._api import WatchClient
from ._clock import WatchClock
from ._feed import DEFAULT_RESYNC, RESYNC_RATE
from ._items import Item, WatchedChannel, WatchedFeed, WatchedOutput, WatchedSession
from ._kinds import DEFAULT_TABLE, KindTable
from ._listing import ChannelView
from ._plan import DEFAULT_STATUS_EVERY, ReadPlan, SessionPlan
from ._reads import read_new_events
from ._scheduler import GRID, ErrorCallback, Scheduler
from ._tracker import SessionTracker

__all__ = ["Engine"]


class Engine(Scheduler):
    """Sessions, channels and the feed, polled from one loop.

    ``poll``: ``lean``, ``full``, ``feed`` or ``auto`` (see ``SessionPlan``). Sessions are claimed directly
    (``add_session``) or through a channel that reports them; a session is watched, by one tracker, for as long
    as any claim on it remains, and reported once. ``playback``: each session's HLS output is judged too, from
    its ``Live`` to its ``Ended`` (see ``_outputs``). ``next()`` gives the next transition, runs the loop while
    there is none, and raises ``StopAsyncIteration`` when nothing is left to watch (unless ``stay_open``).
    """

    def __init__(
        self,
        client: WatchClient,
        *,
        interval: float = 2.0,
        jitter: float = 0.1,
        poll: str = "lean",
        status_every: int = DEFAULT_STATUS_EVERY,
        resync: float | None = None,
        table: KindTable = DEFAULT_TABLE,
        max_silence: float | None = None,
        on_error: ErrorCallback | None = None,
        stay_open: bool = False,
        cursors: Mapping[str, str] | None = None,
        stagger: bool = True,
        first_delay: float = 0.0,
        max_buffer: int = 1024,
        max_in_flight: int = 256,
        clock: WatchClock | None = None,
        playback: bool = False,
        playback_stall_after: float | None = None,
    ) -> None:
        super().__init__(
            interval=interval, jitter=jitter, max_silence=max_silence, on_error=on_error, stay_open=stay_open,
            stagger=stagger, first_delay=first_delay, max_buffer=max_buffer, max_in_flight=max_in_flight, clock=clock,
        )  # fmt: skip
        self.client = client
        self.poll = poll
        self.status_every = status_every
        self.resync = resync
        self.table = table
        self.cursors: Mapping[str, str] = cursors if cursors is not None else {}
        # A status step read before its event waits up to one interval for it: the read that places it begins at
        # least this long after the status was read.
        self.hold = interval
        self.sessions: dict[str, WatchedSession] = {}
        self.channels: dict[str, WatchedChannel] = {}
        # Sessions no channel had claimed that left while channels are watched: when, by the clock. A channel
        # that lists one afterwards takes it for one it already reported, until every channel has read past it.
        self.tombstones: dict[str, float] = {}
        self.feed: WatchedFeed | None = WatchedFeed() if poll in ("feed", "auto") else None
        self._feed_scheduled = False
        # Fed sessions added before the feed's first answer wait for it, with when they would have read: the feed
        # starts them all from the app-wide listings at once (``_fed.bootstrap``), or lets each read on its own.
        self.parked: dict[str, tuple[WatchedSession, float]] | None = {} if self.feed is not None else None
        self.outputs = _outputs.Outputs(self, client, playback_stall_after) if playback else None

    @property
    def mode(self) -> str:
        """How sessions are polled now: ``lean``, ``full`` or ``fed``."""
        if self.feed is not None:
            return "fed"
        return "full" if self.poll == "full" else "lean"

    # -- claims ---------------------------------------------------------------------------------------------

    def add_session(self, session_id: str, *, since: str | None = None, channel_id: str | None = None) -> None:
        """Claim a session directly (no-op if it is claimed directly already)."""
        self.check_open()
        if self.outputs is not None and channel_id is None and session_id not in self.sessions:
            raise ValueError(
                f"playback=True needs the channel of session {session_id}: give channel_id= (the API cannot tell it)"
            )
        watched = self.sessions.get(session_id)
        if watched is not None:
            if not watched.direct:
                watched.direct = True
                if watched.plan.by_row:  # now polled on its own, every interval, not only when its row moves
                    watched.plan.by_row = False
                    self.schedule(watched, self.now())
            if channel_id is not None and watched.tracker.channel_id is None:
                watched.tracker.channel_id = channel_id
            return
        since = since if since is not None else self.cursors.get(session_id)
        tracker = self.new_tracker(session_id, since=since, channel_id=channel_id)
        if tracker.ended:
            return  # resumed after its end: nothing left to report
        watched = WatchedSession(tracker, self.new_plan(by_row=False), direct=True, channel=None)
        self.register(watched, self.first_due())

    def remove_session(self, session_id: str) -> None:
        """Drop the direct claim; the session stays watched while a channel still reports it."""
        watched = self.sessions.get(session_id)
        if watched is None:
            self.purge(session_id)  # ended already: what it left in the buffer goes too
            return
        if not watched.direct:
            return
        watched.direct = False
        if watched.channels:
            if self.mode == "lean":
                watched.plan.by_row = True
        else:
            self.drop_session(watched, purge=True)

    def add_channel(self, channel_id: str) -> None:
        """Follow a channel: every session its listing shows from now on, and those its cursors left unfinished."""
        self.check_open()
        if channel_id in self.channels:
            return
        resume_after, known, unfinished = _channel_reads.cursors_of(self.cursors, channel_id)
        view = ChannelView(channel_id, since=self.clock.wall(), resume_after=resume_after, known=known)
        channel = WatchedChannel(view)
        channel.last_ok = self.now()
        self.channels[channel_id] = channel
        # Its first look at once, not staggered: a session that starts and ends before it is seen only if the
        # server's clock agrees with this one's (see ChannelView.since).
        self.schedule(channel, self.now() + self.first_delay)
        for session_id, cursor in unfinished:
            _channel_reads.take_up(self, channel_id, session_id, since=cursor, row=None)

    def remove_channel(self, channel_id: str) -> None:
        channel = self.channels.pop(channel_id, None)
        if channel is None:
            return
        channel.alive = False
        for watched in self.claims_of(channel_id):
            watched.channels = tuple(c for c in watched.channels if c != channel_id)
            if not watched.claimed:
                self.drop_session(watched, purge=True)

    @property
    def watching(self) -> frozenset[tuple[str, str]]:
        direct = [("session", sid) for sid, w in self.sessions.items() if w.direct]
        return frozenset(direct) | frozenset(("channel", cid) for cid in self.channels)

    # -- what the loop asks ---------------------------------------------------------------------------------

    def read(self, item: Item) -> Coroutine[Any, Any, None]:
        if isinstance(item, WatchedSession):
            return self._poll_session(item)
        if isinstance(item, WatchedChannel):
            return _channel_reads.poll_channel(self, item)
        if isinstance(item, WatchedOutput):
            assert self.outputs is not None
            return self.outputs.poll(item)
        assert isinstance(item, WatchedFeed)
        return _fed.poll_feed(self, item)

    def give_up(self, item: Item, exc: SigmaError) -> bool:
        if isinstance(item, WatchedSession):
            self.drop_session(item, purge=False)
        elif isinstance(item, WatchedChannel):
            self.remove_channel(item.ident)
        elif isinstance(item, WatchedOutput):
            assert self.outputs is not None
            return self.outputs.give_up(item, exc)
        else:
            _fed.feed_failed(self, exc)
            return False
        return True

    def done(self) -> bool:
        return not self.sessions and not self.channels

    # -- sessions -------------------------------------------------------------------------------------------

    def resync_period(self) -> float:
        """Seconds between a fed session's own reads: ``resync``, or by default 300 s stretched so that the
        monitor's resyncs stay under ``RESYNC_RATE`` reads a second."""
        if self.resync is not None:
            return self.resync
        return max(DEFAULT_RESYNC, len(self.sessions) / RESYNC_RATE)

    async def _poll_session(self, watched: WatchedSession) -> None:
        # The loop starts a read up to a grid step early: a resync started so must count as due, or the poll
        # would read nothing and be due again at once, and again, until the clock caught up.
        resync = watched.plan.mode == "fed" and self.now() + GRID >= watched.next_resync
        plan = watched.plan.reads(watched.tracker, resync=resync)
        began = self.clock.wall()
        try:
            reads = self._session_reads(watched, plan)
            status, status_at, events = await (reads if self.max_silence is None else self.guarded(watched, reads))
        except SigmaError as exc:
            watched.busy = False
            self.failed(watched, exc)
            return
        watched.busy = False
        if not watched.alive:
            return
        watched.succeeded(self.now())
        if watched.plan.mode == "fed" and (resync or not watched.started):
            # Spread evenly over one resync period from the first read on, never bunched at start.
            spread = random.uniform(0.0, 1.0) if not watched.started else random.uniform(0.9, 1.1)
            watched.next_resync = self.now() + self.resync_period() * spread
        self._feed_session(watched, plan, status, status_at, events, began)

    async def _session_reads(
        self, watched: WatchedSession, plan: ReadPlan
    ) -> tuple[str | None, datetime | None, list[Event]]:
        tracker = watched.tracker
        status, status_at = None, None
        if plan.status:
            status = (await self.client.sessions.status(tracker.session_id)).status
            status_at = self.clock.wall()
        elif watched.row is not None:
            status, status_at = watched.row.status, watched.row_at  # a listing read it, before the events below
        events = await read_new_events(self.client, tracker) if plan.events else []
        return status, status_at, events

    def _feed_session(
        self,
        watched: WatchedSession,
        plan: ReadPlan,
        status: str | None,
        status_at: datetime | None,
        events: list[Event],
        began: datetime,
    ) -> None:
        tracker = watched.tracker
        if watched.pending:
            events = events + watched.pending
            watched.pending = None
        started_at = watched.row.started_at if watched.row is not None else None
        watched.row_moved = False
        if plan.events and watched.catch_up_after is not None and began >= watched.catch_up_after:
            watched.catch_up_after = None
        transitions, fresh = tracker.feed_fresh(status, events, began, started_at=started_at, status_at=status_at)
        watched.plan.polled(plan, fresh, self.table)
        self.emit_session(watched, transitions)
        if not tracker.ended:
            if watched.catching_up:
                watched.next_resync = self.now()  # this read began before the feed's gap closed: again, now
            self.schedule(watched, self.next_due(watched))

    def emit_session(self, watched: WatchedSession, transitions: list[Transition]) -> None:
        """Yield a session's transitions; its output's watch starts at its Live, and everything ends at Ended."""
        self.emit(transitions)
        if watched.tracker.ended:
            self.drop_session(watched, purge=False)
        elif self.outputs is not None and watched.output is None and watched.tracker.live:
            self.outputs.start(watched)

    def next_due(self, watched: WatchedSession) -> float:
        """When a session polls next by its plan, and no later than its held step's release."""
        now = self.now()
        plan = watched.plan
        release = watched.tracker.release_at
        if watched.row_moved:
            due = now
        elif plan.mode == "fed":
            # An announced change is read at once, unless a held step is pending: its read comes at release.
            due = now if plan.announced and not plan.by_row and release is None else watched.next_resync
        elif plan.by_row:
            due = now + self.jittered(self.interval * plan.status_every)
        else:
            due = now + self.jittered(self.interval)
        if release is not None:
            # A grid step past the release: the loop may start the read that much early, and a read before the
            # release would only be due again at once.
            due = min(due, now + max(0.0, (release - self.clock.wall()).total_seconds()) + GRID)
        return due

    def drop_session(self, watched: WatchedSession, *, purge: bool) -> None:
        if self.channels and not watched.channels:
            self.tombstones[watched.ident] = self.now()
        watched.alive = False
        if watched.output is not None:
            watched.output.alive = False
        if self.sessions.get(watched.ident) is watched:
            del self.sessions[watched.ident]
        if purge:
            self.purge(watched.ident)
        for channel_id in watched.channels:
            channel = self.channels.get(channel_id)
            if channel is not None and channel.gone is not None and not self.claims_of(channel_id):
                self.channel_over(channel)

    def start_feed(self) -> None:
        # The feed reads once there is a session to route to, and from then on for the monitor's life.
        if self.feed is not None and not self._feed_scheduled:
            self._feed_scheduled = True
            self.feed.last_ok = self.now()
            self.schedule(self.feed, self.now())

    def new_tracker(
        self, session_id: str, *, since: str | None, channel_id: str | None, created_at: datetime | None = None
    ) -> SessionTracker:
        return SessionTracker(
            session_id, channel_id=channel_id, since=since, table=self.table, hold=self.hold, created_at=created_at
        )

    def new_plan(self, *, by_row: bool) -> SessionPlan:
        mode = self.mode
        if mode == "fed":
            assert self.feed is not None
            return SessionPlan("fed", status_every=self.status_every, by_row=self.feed.view.rows is True)
        if mode == "full":
            return SessionPlan("full", status_every=self.status_every)
        return SessionPlan("lean", status_every=self.status_every, by_row=by_row)

    def register(self, watched: WatchedSession, due: float) -> None:
        watched.last_ok = self.now()
        self.sessions[watched.ident] = watched
        if self.parked is not None and watched.plan.mode == "fed":
            self.parked[watched.ident] = (watched, due)
        else:
            self.schedule(watched, due)
        self.start_feed()

    def unpark(self) -> dict[str, tuple[WatchedSession, float]]:
        """Take the sessions waiting for the feed's first answer; from now on sessions poll as they come."""
        parked, self.parked = self.parked or {}, None
        return {sid: entry for sid, entry in parked.items() if entry[0].alive}

    def release(self, parked: dict[str, tuple[WatchedSession, float]]) -> None:
        """Let these sessions make their own first read, when they would have."""
        for watched, due in parked.values():
            if watched.alive and not watched.busy:
                self.schedule(watched, due)

    # -- channels ----------------------------------------------------------------------------------------------

    def claims_of(self, channel_id: str) -> list[WatchedSession]:
        return [w for w in self.sessions.values() if channel_id in w.channels]

    def channel_over(self, channel: WatchedChannel) -> None:
        assert channel.gone is not None
        self.channels.pop(channel.ident, None)
        channel.alive = False
        self.report(channel.ident, channel.gone)

