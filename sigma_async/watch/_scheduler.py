"""One loop for every watch of a monitor: a heap of due times, a read started for each due item, results fed back.

Nothing here runs per session. A watched session is data (``WatchedSession``); the loop runs inside the
consumer's ``__anext__``, starts each due read as a short task, sleeps once until the next due time, and each
read's result is fed to the pure tracker the moment it arrives. So a slow consumer slows the polling instead
of filling memory, and a monitor that is not iterated costs nothing.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import random
from collections import deque
from collections.abc import AsyncGenerator, Callable, Coroutine, Mapping
from datetime import datetime, timezone
from typing import Any, Final

import anyio

from .._observe import FailureBox, watching_failures
from .._protocol import check_id
from ..errors import NotFoundError, SigmaError, WatchError
from ..models import Event, Session
from ..transitions import Transition
from ._api import WatchClient
from ._clock import RealClock, WatchClock
from ._cursor import decode_cursor
from ._feed import FEED_PAGE_SIZE, FeedRefused, refuses_feed
from ._items import Item, WatchedChannel, WatchedFeed, WatchedSession
from ._kinds import DEFAULT_TABLE, KindTable
from ._listing import ChannelView
from ._plan import DEFAULT_STATUS_EVERY, ReadPlan, SessionPlan, announces
from ._reads import backoff_delay, describe, is_fatal, read_back, read_listing, read_new_events
from ._tracker import SessionTracker

__all__ = ["Engine", "ErrorCallback", "stream"]

logger = logging.getLogger("sigma_async")

ErrorCallback = Callable[[str, SigmaError], object]

#: Due times this close together start in one wake-up.
_GRID: Final = 0.005
_LIFECYCLE_EVENT_KINDS: Final = frozenset({"initializing", "started", "live", "stopped"})


class Engine:
    """The running part of every watcher: sessions, channels and the feed, polled from one loop.

    ``poll``: ``lean``, ``full``, ``feed`` or ``auto`` (see ``SessionPlan``). Sessions are claimed directly
    (``add_session``) or through a channel that reports them; a session is watched, by one tracker, for as long
    as any claim on it remains, and reported once. ``next()`` gives the next transition, runs the loop while
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
        resync: float = 300.0,
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
    ) -> None:
        self.client = client
        self.clock: WatchClock = clock if clock is not None else RealClock()
        self.interval = interval
        self.jitter = jitter
        self.poll = poll
        self.status_every = status_every
        self.resync = resync
        self.table = table
        self.max_silence = max_silence
        self.on_error = on_error
        self.stay_open = stay_open
        self.cursors: Mapping[str, str] = cursors if cursors is not None else {}
        self.stagger = stagger
        self.first_delay = first_delay
        self.max_buffer = max_buffer
        self.max_in_flight = max_in_flight
        # A status step read before its event waits for it until the next poll, which comes at least this late.
        self.hold = 0.9 * (1.0 - jitter) * interval
        self.sessions: dict[str, WatchedSession] = {}
        self.channels: dict[str, WatchedChannel] = {}
        self.feed: WatchedFeed | None = WatchedFeed() if poll in ("feed", "auto") else None
        self.finished = False
        self._heap: list[tuple[float, int, int, Item]] = []
        self._seq = itertools.count()
        self._reads: set[asyncio.Task[None]] = set()
        self._out: deque[Transition] = deque()
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._wake_at = float("inf")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._feed_scheduled = False

    # -- what is watched ------------------------------------------------------------------------------------

    @property
    def mode(self) -> str:
        """How sessions are polled now: ``lean``, ``full`` or ``fed``."""
        if self.feed is not None:
            return "fed"
        return "full" if self.poll == "full" else "lean"

    def add_session(self, session_id: str, *, since: str | None = None, channel_id: str | None = None) -> None:
        """Claim a session directly (no-op if it is claimed directly already)."""
        self._check_open()
        watched = self.sessions.get(session_id)
        if watched is not None:
            if not watched.direct:
                watched.direct = True
                if watched.plan.by_row:  # now polled on its own, every interval, not only when its row moves
                    watched.plan.by_row = False
                    self._schedule(watched, self._now())
            if channel_id is not None and watched.tracker.channel_id is None:
                watched.tracker.channel_id = channel_id
            return
        since = since if since is not None else self.cursors.get(session_id)
        tracker = self._tracker(session_id, since=since, channel_id=channel_id)
        if tracker.ended:
            return  # resumed after its end: nothing left to report
        watched = WatchedSession(tracker, self._plan(by_row=False), direct=True, channel=None)
        self._register(watched)

    def remove_session(self, session_id: str) -> None:
        """Drop the direct claim; the session stays watched while a channel still reports it."""
        watched = self.sessions.get(session_id)
        if watched is None:
            self._purge(session_id)  # ended already: what it left in the buffer goes too
            return
        if not watched.direct:
            return
        watched.direct = False
        if watched.channels:
            if self.mode == "lean":
                watched.plan.by_row = True
        else:
            self._drop_session(watched, purge=True)

    def add_channel(self, channel_id: str) -> None:
        """Follow a channel: every session its listing shows from now on, and those its cursors left unfinished."""
        self._check_open()
        if channel_id in self.channels:
            return
        resume_after, known, unfinished = self._cursors_of(channel_id)
        view = ChannelView(channel_id, since=self.clock.wall(), resume_after=resume_after, known=known)
        channel = WatchedChannel(view)
        channel.last_ok = self._now()
        self.channels[channel_id] = channel
        self._schedule(channel, self._first_due())
        for session_id, cursor in unfinished:
            self._take_up(channel_id, session_id, since=cursor, row=None)

    def remove_channel(self, channel_id: str) -> None:
        channel = self.channels.pop(channel_id, None)
        if channel is None:
            return
        channel.alive = False
        for watched in [w for w in self.sessions.values() if channel_id in w.channels]:
            watched.channels.discard(channel_id)
            if not watched.claimed:
                self._drop_session(watched, purge=True)

    @property
    def watching(self) -> frozenset[tuple[str, str]]:
        direct = [("session", sid) for sid, w in self.sessions.items() if w.direct]
        return frozenset(direct) | frozenset(("channel", cid) for cid in self.channels)

    # -- the consumer's side --------------------------------------------------------------------------------

    async def next(self) -> Transition:
        """The next transition; runs the loop until there is one. ``StopAsyncIteration`` when all is done."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        while True:
            if self._out:
                return self._out.popleft()
            if self._error is not None:
                error, self._error = self._error, None
                self.finished = True
                await self.aclose()
                raise error
            if self._done():
                self.finished = True
                await self.aclose()
                raise StopAsyncIteration
            self._pump()
            if not self._out and self._error is None:
                await self._sleep()

    async def aclose(self) -> None:
        """Stop every read and wait until they are gone. Safe to call twice."""
        self.finished = True
        reads, self._reads = self._reads, set()
        for task in reads:
            task.cancel()
        if reads:
            await asyncio.gather(*reads, return_exceptions=True)
        self._heap.clear()

    def abandon(self) -> None:
        """Cancel the running reads without waiting: for a monitor dropped while it still had some."""
        self.finished = True
        for task in self._reads:
            task.cancel()
        self._heap.clear()

    def _done(self) -> bool:
        return not self.stay_open and not self.sessions and not self.channels

    # -- the loop -------------------------------------------------------------------------------------------

    def _pump(self) -> None:
        """Start every read that is due (within one grid step), as far as the caps allow."""
        heap = self._heap
        if not heap:
            return
        limit = self._now() + _GRID
        while heap and heap[0][0] <= limit:
            if len(self._reads) >= self.max_in_flight or len(self._out) >= self.max_buffer:
                return
            _, _, gen, item = heapq.heappop(heap)
            if gen != item.gen or not item.alive:
                continue  # rescheduled or dropped since
            item.gen += 1
            self._start(item)

    async def _sleep(self) -> None:
        loop = self._loop
        assert loop is not None
        waiter = self._waiter = loop.create_future()
        handle = None
        if self._heap and len(self._reads) < self.max_in_flight and len(self._out) < self.max_buffer:
            self._wake_at = self._heap[0][0]
            handle = self.clock.call_at(self._wake_at, self._wake)
        try:
            await waiter
        finally:
            self._waiter = None
            self._wake_at = float("inf")
            if handle is not None:
                handle.cancel()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _schedule(self, item: Item, due: float) -> None:
        item.gen += 1
        item.due = due
        heapq.heappush(self._heap, (due, next(self._seq), item.gen, item))
        if due < self._wake_at:
            self._wake()

    def _start(self, item: Item) -> None:
        loop = self._loop
        assert loop is not None
        coro: Coroutine[Any, Any, None]
        if isinstance(item, WatchedSession):
            coro = self._poll_session(item)
        elif isinstance(item, WatchedChannel):
            coro = self._poll_channel(item)
        else:
            assert isinstance(item, WatchedFeed)
            coro = self._poll_feed(item)
        item.busy = True
        task = loop.create_task(coro)
        self._reads.add(task)
        task.add_done_callback(self._read_done)

    def _read_done(self, task: asyncio.Task[None]) -> None:
        self._reads.discard(task)
        if not task.cancelled() and task.exception() is not None and self._error is None:
            self._error = task.exception()  # a bug, not a server's failure: those are handled in the read
        self._wake()

    def _emit(self, transitions: list[Transition]) -> None:
        if transitions:
            self._out.extend(transitions)
            self._wake()

    # -- sessions -------------------------------------------------------------------------------------------

    async def _poll_session(self, watched: WatchedSession) -> None:
        resync = watched.plan.mode == "fed" and self._now() >= watched.next_resync
        plan = watched.plan.reads(watched.tracker, resync=resync)
        try:
            status, events = await self._guarded(watched, self._session_reads(watched, plan))
        except SigmaError as exc:
            watched.busy = False
            self._failed(watched, exc)
            return
        watched.busy = False
        if not watched.alive:
            return
        watched.succeeded(self._now())
        if watched.plan.mode == "fed" and (resync or not watched.started):
            # Spread evenly over one resync period from the first read on, never bunched at start.
            spread = random.uniform(0.0, 1.0) if not watched.started else random.uniform(0.9, 1.1)
            watched.next_resync = self._now() + self.resync * spread
        self._feed_session(watched, plan, status, events)

    async def _session_reads(self, watched: WatchedSession, plan: ReadPlan) -> tuple[str | None, list[Event]]:
        tracker = watched.tracker
        status = (await self.client.sessions.status(tracker.session_id)).status if plan.status else None
        if status is None and watched.row is not None:
            status = watched.row.status  # the channel's listing read it, before the events below
        events = await read_new_events(self.client, tracker) if plan.events else []
        return status, events

    def _feed_session(self, watched: WatchedSession, plan: ReadPlan, status: str | None, events: list[Event]) -> None:
        tracker = watched.tracker
        if watched.pending:
            events = events + watched.pending
            watched.pending = []
        started_at = watched.row.started_at if watched.row is not None else None
        watched.row_moved = False
        fresh = [e for e in events if not tracker.knows(e)]
        transitions = tracker.feed(status, events, self.clock.wall(), started_at=started_at)
        watched.plan.polled(plan, fresh, self.table)
        self._emit(transitions)
        if tracker.ended:
            self._drop_session(watched, purge=False)
        else:
            self._schedule(watched, self._next_due(watched))

    def _next_due(self, watched: WatchedSession) -> float:
        now = self._now()
        plan = watched.plan
        if watched.row_moved:
            due = now
        elif plan.mode == "fed":
            # An announced change is read at once, unless a held step is pending: its read comes at release.
            held = watched.tracker.release_at is not None
            due = now if plan.announced and not held else watched.next_resync
        elif plan.by_row:
            due = now + self._jittered(self.interval * plan.status_every)
        else:
            due = now + self._jittered(self.interval)
        release = watched.tracker.release_at
        if release is not None:
            due = min(due, now + max(0.0, (release - self.clock.wall()).total_seconds()) + 0.001)
        return due

    def _tracker(
        self, session_id: str, *, since: str | None, channel_id: str | None, created_at: datetime | None = None
    ) -> SessionTracker:
        return SessionTracker(
            session_id, channel_id=channel_id, since=since, table=self.table, hold=self.hold, created_at=created_at
        )

    def _plan(self, *, by_row: bool) -> SessionPlan:
        mode = self.mode
        return SessionPlan(
            "fed" if mode == "fed" else ("full" if mode == "full" else "lean"),
            status_every=self.status_every,
            by_row=by_row and mode == "lean",
        )

    def _register(self, watched: WatchedSession) -> None:
        watched.last_ok = self._now()
        self.sessions[watched.ident] = watched
        self._schedule(watched, self._first_due())
        self._start_feed()

    def _start_feed(self) -> None:
        # The feed reads once there is a session to route to, and from then on for the monitor's life.
        if self.feed is not None and not self._feed_scheduled:
            self._feed_scheduled = True
            self.feed.last_ok = self._now()
            self._schedule(self.feed, self._now())

    def _drop_session(self, watched: WatchedSession, *, purge: bool) -> None:
        watched.alive = False
        if self.sessions.get(watched.ident) is watched:
            del self.sessions[watched.ident]
        if purge:
            self._purge(watched.ident)
        for channel_id in watched.channels:
            channel = self.channels.get(channel_id)
            if channel is not None and channel.gone is not None and not self._claims_of(channel_id):
                self._channel_over(channel)

    def _purge(self, session_id: str) -> None:
        # Removal means "no more of these": drop what is waiting to be yielded, too.
        if any(t.session_id == session_id for t in self._out):
            self._out = deque(t for t in self._out if t.session_id != session_id)

    # -- channels -------------------------------------------------------------------------------------------

    async def _poll_channel(self, channel: WatchedChannel) -> None:
        view = channel.view
        try:
            async def reads() -> Any:
                if view.check_due(self.status_every):
                    await self.client.channels.get(view.channel_id)
                return await read_listing(self.client, view.start_read())

            read = await self._guarded(channel, reads())
        except SigmaError as exc:
            channel.busy = False
            if isinstance(exc, NotFoundError) and view.looked:
                self._channel_deleted(channel, exc)
            else:
                self._failed(channel, exc)
            return
        channel.busy = False
        if not channel.alive:
            return
        channel.succeeded(self._now())
        cid = view.channel_id
        new, moved = view.sort_out(read, lambda sid: sid in self.sessions and cid in self.sessions[sid].channels)
        for row in moved:
            self._row_moved(self.sessions[row.id], row)
        for row in new:
            try:
                _server_id(row.id, cid)
            except WatchError as exc:
                self._fail(channel, exc)
                return
            self._take_up(cid, row.id, since=self.cursors.get(row.id), row=row)
        self._schedule(channel, self._now() + self._jittered(self.interval))

    def _take_up(self, channel_id: str, session_id: str, *, since: str | None, row: Session | None) -> None:
        watched = self.sessions.get(session_id)
        if watched is not None:
            watched.channels.add(channel_id)
            if row is not None:
                self._row_moved(watched, row)
            return
        tracker = self._tracker(
            session_id, since=since, channel_id=channel_id, created_at=row.created_at if row is not None else None
        )
        if tracker.ended:
            return
        watched = WatchedSession(tracker, self._plan(by_row=True), direct=False, channel=channel_id)
        watched.row = row
        watched.last_ok = self._now()
        self.sessions[session_id] = watched
        self._schedule(watched, self._now())
        self._start_feed()

    def _row_moved(self, watched: WatchedSession, row: Session) -> None:
        watched.row = row
        if watched.plan.by_row or watched.plan.mode == "fed":
            watched.row_moved = True
            if not watched.busy:
                self._schedule(watched, self._now())

    def _cursors_of(self, channel_id: str) -> tuple[datetime | None, frozenset[str], list[tuple[str, str]]]:
        """From the cursors: the newest ``createdAt`` among the channel's sessions and which sessions were created
        then, and the sessions left unfinished."""
        newest: datetime | None = None
        at_newest: set[str] = set()
        unfinished: list[tuple[str, str]] = []
        for session_id, cursor in self.cursors.items():
            try:
                c = decode_cursor(cursor, session_id)
            except ValueError:
                continue  # not this layer's to judge: a direct add of that session reports it
            if c.c != channel_id:
                continue
            if c.ca is not None:
                if newest is None or c.ca > newest:
                    newest, at_newest = c.ca, {session_id}
                elif c.ca == newest:
                    at_newest.add(session_id)
            if c.k != "ended":
                unfinished.append((session_id, cursor))
        if newest is None and unfinished:
            newest = datetime.min.replace(tzinfo=timezone.utc)
        return newest, frozenset(at_newest), unfinished

    def _claims_of(self, channel_id: str) -> list[WatchedSession]:
        return [w for w in self.sessions.values() if channel_id in w.channels]

    def _channel_deleted(self, channel: WatchedChannel, exc: SigmaError) -> None:
        # Its open session was ended by the deletion: let the sessions it reports reach their Ended first.
        channel.gone = exc
        if not self._claims_of(channel.ident):
            self._channel_over(channel)

    def _channel_over(self, channel: WatchedChannel) -> None:
        assert channel.gone is not None
        self.channels.pop(channel.ident, None)
        channel.alive = False
        self._report(channel.ident, channel.gone)

    # -- the feed -------------------------------------------------------------------------------------------

    async def _poll_feed(self, feed: WatchedFeed) -> None:
        view = feed.view
        fetch = self.client.events.list_app
        try:
            if not view.probed:
                page = await self._guarded(feed, fetch(page=1, per_page=FEED_PAGE_SIZE))
                view.check_probe(page)
                events: list[Event] = []
            else:
                events = await self._guarded(
                    feed,
                    read_back(lambda p, n: fetch(page=p, per_page=n), view.ends_read, FEED_PAGE_SIZE, "the feed"),
                )
        except SigmaError as exc:
            feed.busy = False
            if isinstance(exc, FeedRefused) or refuses_feed(exc):
                self._feed_refused(exc)
            else:
                self._failed(feed, exc)
            return
        feed.busy = False
        if self.feed is not feed:
            return
        now = self._now()
        feed.succeeded(now)
        self._route(view.take(events))
        # A fixed beat: the time a read takes does not add to the lag of the next; behind the beat, read at once.
        feed.beat = max(feed.beat + self.interval, now)
        self._schedule(feed, feed.beat)

    def _route(self, by_session: dict[str, list[Event]]) -> None:
        at = self.clock.wall()
        for session_id, events in by_session.items():
            watched = self.sessions.get(session_id)
            if watched is None or watched.plan.mode != "fed":
                continue
            if watched.busy or not watched.started:
                watched.pending.extend(events)  # fed with its own read, in order
                continue
            tracker = watched.tracker
            fresh = [e for e in events if not tracker.knows(e)]
            if not fresh:
                continue
            self._emit(tracker.feed(None, events, at))
            if tracker.ended:
                self._drop_session(watched, purge=False)
                continue
            if announces(fresh, self.table):
                watched.plan.announced = True
            if watched.plan.announced or tracker.release_at is not None:
                self._schedule(watched, self._next_due(watched))

    def _feed_refused(self, exc: SigmaError) -> None:
        refused = (
            exc if isinstance(exc, FeedRefused)
            else FeedRefused(f"the server does not serve app-wide event listings ({describe(exc)})")
        )  # fmt: skip
        if refused is not exc:
            refused.__cause__ = exc
        if self.poll == "feed":
            self._error = refused
            self._wake()
            return
        logger.warning("monitor: %s; polling each session on its own instead (poll='lean')", refused)
        if self.feed is not None:
            self.feed.alive = False
        self.feed = None
        now = self._now()
        for watched in self.sessions.values():
            watched.plan.mode = "lean"
            watched.plan.by_row = not watched.direct
            if not watched.busy:
                self._schedule(watched, now + (random.uniform(0, self.interval) if self.stagger else 0.0))

    # -- failures -------------------------------------------------------------------------------------------

    async def _guarded(self, item: Item, read: Coroutine[Any, Any, Any]) -> Any:
        """Run one item's reads; with ``max_silence``, cut them off (naming what the server last answered) once the
        item has had no good answer for that long, even while the client is still retrying inside them."""
        box = FailureBox()
        token = watching_failures.set(box)
        try:
            if self.max_silence is None:
                return await read
            left = max(0.0, self.max_silence - (self._now() - item.last_ok))
            with anyio.move_on_after(left) as scope:
                return await read
            assert scope.cancelled_caught
            raise self._silence(item, box.last)
        finally:
            watching_failures.reset(token)
            read.close()

    def _failed(self, item: Item, exc: SigmaError) -> None:
        if not item.alive:
            return
        if is_fatal(exc):
            self._fail(item, exc)
            return
        item.failures += 1
        item.last_error = exc
        now = self._now()
        delay = backoff_delay(self.interval, item.failures)
        if self.max_silence is not None:
            left = self.max_silence - (now - item.last_ok)
            if left <= 0:
                self._fail(item, self._silence(item, None))
                return
            delay = min(delay, left + 0.001)  # wake in time to give up on schedule
        logger.info("watch %s: %s; polling again in %.2fs", _what(item), describe(exc), delay)
        self._schedule(item, now + delay)

    def _silence(self, item: Item, in_flight: SigmaError | None) -> WatchError:
        silent = self._now() - item.last_ok
        last = in_flight or item.last_error
        why = f" (last: {describe(last)})" if last else " (no answer within the time)"
        error = WatchError(f"{_what(item)}: no good answer from the server for {silent:.1f}s{why}")
        error.__cause__ = last
        return error

    def _fail(self, item: Item, exc: SigmaError) -> None:
        """A watch that cannot go on: drop it and tell ``on_error``, or end the monitor with the error."""
        if isinstance(item, WatchedSession):
            self._drop_session(item, purge=False)
        elif isinstance(item, WatchedChannel):
            self.remove_channel(item.ident)
        elif self.poll == "feed":
            self._error = self._error or exc  # the feed was asked for: its failure ends the monitor as it is
            self._wake()
            return
        else:
            self._feed_refused(exc)
            return
        self._report(item.ident, exc)

    def _report(self, ident: str, exc: SigmaError) -> None:
        if self.on_error is None:
            if self._error is None:
                self._error = exc
            self._wake()
            return
        self.on_error(ident, exc)

    # -- helpers --------------------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self.finished:
            raise RuntimeError("this monitor has finished; start a new one")

    def _now(self) -> float:
        return self.clock.now()

    def _first_due(self) -> float:
        # Spread the first polls over one interval so that thousands of watches do not poll in step.
        spread = random.uniform(0, self.interval) if self.stagger else 0.0
        return self._now() + self.first_delay + spread

    def _jittered(self, seconds: float) -> float:
        return seconds * random.uniform(1.0 - self.jitter, 1.0 + self.jitter)


async def stream(engine: Engine) -> AsyncGenerator[Transition, None]:
    """An engine's transitions as an async generator; closing it stops the engine's reads."""
    try:
        while True:
            try:
                transition = await engine.next()
            except StopAsyncIteration:
                return
            yield transition
    finally:
        await engine.aclose()


def _what(item: Item) -> str:
    if isinstance(item, WatchedSession):
        return f"session {item.ident}"
    if isinstance(item, WatchedChannel):
        return f"channel {item.ident}"
    return "app-wide event feed"


def _server_id(session_id: str, channel_id: str) -> str:
    # An id from the server goes into the next URL: one that is not a plain path segment ends this watch with a
    # SigmaError (the monitor's on_error hears of it), never a bare ValueError that would end every watch.
    try:
        return check_id(session_id, "session id")
    except ValueError as exc:
        raise WatchError(f"channel {channel_id}: the server named a malformed session id {session_id[:40]!r}") from exc


