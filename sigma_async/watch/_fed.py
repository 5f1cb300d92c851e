"""The feed's part of the engine: read the app-wide listing on a fixed beat, route each event to its session.

Pure decisions (the probe's checks, where a read stops, who gets what) are ``_feed.FeedView``'s; this is the I/O
and what the engine does with it.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import anyio.lowlevel

from ..errors import APIStatusError, ResponseDecodeError, SigmaError
from ..models import Event, Page, Session
from ._api import WatchClient
from ._feed import FEED_PAGE_SIZE, FeedRefused, FeedView, refuses_feed
from ._items import Row, WatchedFeed, WatchedSession
from ._plan import ReadPlan, announces
from ._reads import describe, read_back
from ._tracker import SessionTracker
from ._window import LATE_WINDOW, written

if TYPE_CHECKING:
    from ._engine import Engine

__all__ = ["BOOTSTRAP_MIN", "Bootstrap", "bootstrap", "feed_failed", "poll_feed", "route"]

logger = logging.getLogger("sigma_async")

#: Sessions waiting at start below which each reads itself (two requests each cost less than the listings).
BOOTSTRAP_MIN: Final = 50
#: Passes in a row the app-wide sessions listing may fail before the feed does without it.
ROWS_FAILURES: Final = 3
#: Sessions the start feeds between two checkpoints.
_SLICE: Final = 256
#: Pages of the app-wide events listing the start may read before the sessions it did not reach read themselves.
MAX_BOOTSTRAP_PAGES: Final = 2_000


async def poll_feed(engine: Engine, feed: WatchedFeed) -> None:
    """One pass of the feed: at first the probe (and the start of the sessions waiting for it), then every page
    back to what the last pass read."""
    view = feed.view
    fetch = engine.client.events.list_app
    rows: list[Session] = []
    rows_at: datetime | None = None
    began = engine.clock.wall()  # what the pass shows is as of its start: a hold is released by later reads only
    try:
        if not view.probed:
            page = await engine.guarded(feed, fetch(page=1, per_page=FEED_PAGE_SIZE))
            view.check_probe(page)
            await start_sessions(engine, feed, page, began)
            events: list[Event] = []
        else:
            # The sessions first, then the events: what a row's status shows is never newer than the events.
            rows = await engine.guarded(feed, read_rows(engine, view)) if view.rows is not False else []
            rows_at = engine.clock.wall()
            events = await engine.guarded(
                feed, read_back(lambda p, n: fetch(page=p, per_page=n), view.ends_read, FEED_PAGE_SIZE, "the feed")
            )
    except SigmaError as exc:
        feed.busy = False
        if isinstance(exc, FeedRefused) or refuses_feed(exc):
            feed_failed(engine, exc)
        else:
            engine.release(engine.unpark())  # while the feed is failing, each session reads on its own
            engine.failed(feed, exc)
        return
    feed.busy = False
    if engine.feed is not feed:
        return
    try:
        mine = view.take(events)
    except FeedRefused as exc:
        feed_failed(engine, exc)
        return
    now = engine.now()
    feed.succeeded(now)
    route(engine, mine, rows, began, rows_at if rows else None)
    # A fixed beat: the time a read takes does not add to the lag of the next; behind the beat, read at once.
    feed.beat = max(feed.beat + engine.interval, now)
    engine.schedule(feed, feed.beat)


async def start_sessions(engine: Engine, feed: WatchedFeed, first: Page[Event], began: datetime) -> None:
    """The sessions that waited for the feed's first answer: started together from the app-wide listings when
    there are many (``bootstrap``), each with its own first read otherwise, or where the listings fall short."""
    parked = engine.unpark()
    now, answered = engine.now(), engine.clock.wall()
    for watched in engine.sessions.values():
        if watched.plan.mode == "fed" and watched.alive and (watched.started or watched.busy):
            # It read on its own while the feed was failing (or its read is still on its way): events between
            # that read and this first page are below the page, where the feed will not look. An own read begun
            # after this page catches them up (a resync, now; for one in flight, once it is back).
            watched.catch_up_after = answered
            if not watched.busy:
                watched.next_resync = now
                engine.schedule(watched, now)
    started: set[str] = set()
    if len(parked) >= BOOTSTRAP_MIN:
        try:
            found = await engine.guarded(
                feed, bootstrap(engine.client, parked, first, feed.view, engine.clock.wall)
            )
        except SigmaError as exc:
            if not isinstance(exc, APIStatusError) and not isinstance(exc, ResponseDecodeError):
                engine.release(parked)
                raise  # a connection failure: the feed backs off; the sessions read on their own meanwhile
            logger.info("monitor: the app-wide sessions listing (%s); each session reads on its own", describe(exc))
        else:
            rows_served(engine, feed.view)
            feed.view.window.note_all(found.events)
            started = await _feed_started(engine, parked, found, began)
    engine.release({sid: entry for sid, entry in parked.items() if sid not in started})


async def _feed_started(
    engine: Engine, parked: dict[str, tuple[WatchedSession, float]], found: Bootstrap, at: datetime
) -> set[str]:
    """Feed each parked session found whole in the bootstrap as its first read; the ones fed.

    In slices with a checkpoint between them: the consumer takes each slice's transitions before the next is
    made (they are most of the start's peak memory), and the loop is not held for the whole start."""
    by_session: dict[str, list[Event]] = {}
    for event in found.events:
        if event.session_id in parked:
            by_session.setdefault(event.session_id, []).append(event)
    found.events = []  # held by the groups now, each let go below as its session is fed
    started = set()
    for n, (sid, (watched, _)) in enumerate(parked.items()):
        if n % _SLICE == 0:
            await anyio.lowlevel.checkpoint()
            now = engine.now()
        # Popped, not read: each session's events and row are let go once it is fed, so that the trackers grow
        # while the bootstrap shrinks instead of on top of it (the peak is most of a large monitor's RSS).
        row = found.rows.pop(sid, None)
        events = by_session.pop(sid, [])
        if row is None or not watched.alive or not found.covers(watched.tracker, row):
            continue
        if watched.busy or watched.started:
            # Something (a channel's row that moved) made it read on its own while the start ran: that read's
            # answer is its first, and the older listings must not be fed around it.
            continue
        started.add(sid)
        tracker = watched.tracker
        transitions, fresh = tracker.feed_fresh(
            row.status, events, at, started_at=row.started_at, status_at=found.rows_at
        )
        watched.plan.polled(ReadPlan(status=True, events=True), fresh, engine.table)
        watched.succeeded(now)
        # Resyncs spread evenly over one period from now, never bunched at start.
        watched.next_resync = now + engine.resync_period() * random.uniform(0.0, 1.0)
        engine.emit_session(watched, transitions)
        if watched.alive:
            engine.schedule(watched, engine.next_due(watched))
    return started


class Bootstrap:
    """What the app-wide listings showed at start: the rows of the sessions found, and every event back to
    ``reached`` (None: the events listing was read to its end)."""

    __slots__ = ("events", "reached", "rows", "rows_at")

    def __init__(self, rows: dict[str, Row], rows_at: datetime, events: list[Event], reached: datetime | None) -> None:
        self.rows = rows
        self.rows_at = rows_at  # when the sessions listing was read to its end
        self.events = events
        self.reached = reached

    def covers(self, tracker: SessionTracker, row: Row) -> bool:
        """Whether the events read reach back far enough for this session: to its start, or to its cursor."""
        if self.reached is None:
            return True
        need = _needed_back_to(tracker, row)
        return need is not None and need >= self.reached


async def bootstrap(
    client: WatchClient,
    parked: dict[str, tuple[WatchedSession, float]],
    first: Page[Event],
    view: FeedView,
    wall: Callable[[], datetime],
) -> Bootstrap:
    """Read the app-wide sessions listing until every parked session is found (or a bound), then the app-wide
    events back to the oldest point one of them needs: ``O(items / page)`` requests, not two per session."""
    rows: dict[str, Row] = {}  # Row, not Session: a hundred thousand full rows would be most of the peak
    want = set(parked)
    pages = 2 + (2 * len(want)) // FEED_PAGE_SIZE
    for number in range(1, pages + 1):
        listed = await client.sessions.list_app(page=number, per_page=FEED_PAGE_SIZE)
        view.note_rows(listed.data)  # where the feed's reads of this listing start from
        rows.update((row.id, Row.of(row)) for row in listed.data if row.id in want)
        if len(rows) == len(want) or len(listed.data) < _served(listed.per_page):
            break
    rows_at = wall()
    needs = [_needed_back_to(parked[sid][0].tracker, row) for sid, row in rows.items()]
    if not rows or any(n is None for n in needs):
        return Bootstrap(rows, rows_at, list(first.data), _oldest(first.data) if _full(first) else None)
    floor = min(n for n in needs if n is not None)
    found: dict[str, Event] = {e.id: e for e in first.data}
    page, number = first, 1
    while _full(page) and (oldest := _oldest(page.data)) is not None and oldest >= floor:
        if number >= MAX_BOOTSTRAP_PAGES:
            return Bootstrap(rows, rows_at, list(found.values()), oldest)
        number += 1
        page = await client.events.list_app(page=number, per_page=FEED_PAGE_SIZE)
        found.update((e.id, e) for e in page.data)
    return Bootstrap(rows, rows_at, list(found.values()), _oldest(page.data) if _full(page) else None)


def _needed_back_to(tracker: SessionTracker, row: Row) -> datetime | None:
    # A resumed session needs what it may not have read: from its cursor's mark, less the late window; a new
    # one needs its whole history, from its creation.
    if tracker.mark is not None:
        return tracker.mark - LATE_WINDOW
    return row.created_at


def _oldest(events: list[Event]) -> datetime | None:
    return min((written(e) for e in events), default=None)


def _full(page: Page[Any]) -> bool:
    return len(page.data) >= _served(page.per_page)  # a short page is the only sure last one: a total may lie


def _served(per_page: int | None) -> int:
    return per_page if per_page is not None and 0 < per_page < FEED_PAGE_SIZE else FEED_PAGE_SIZE


async def read_rows(engine: Engine, view: FeedView) -> list[Session]:
    """The app-wide sessions listing down to the first row that did not change since the last pass: the status
    of every session that moved. A server that refuses it (a definite answer) is not asked again: each fed
    session then reads its own status when an event announces a change."""
    rows: dict[str, Session] = {}
    first_look = view.rows_at is None
    try:
        for number in range(1, MAX_BOOTSTRAP_PAGES + 1):
            page = await engine.client.sessions.list_app(page=number, per_page=FEED_PAGE_SIZE)
            done = first_look or len(page.data) < _served(page.per_page)
            for row in page.data:
                if view.ends_rows(row):
                    done = True
                    break
                rows.setdefault(row.id, row)
            if done:
                break
    except SigmaError as exc:
        # The sessions listing is a help, not the feed: a pass goes on without it. Refused, or failing pass after
        # pass, it is given up, and each fed session reads its own status when an event announces a change.
        view.rows_failures += 1
        if refuses_feed(exc) or view.rows_failures >= ROWS_FAILURES:
            logger.info("monitor: the app-wide sessions listing (%s); fed sessions read their own status",
                        describe(exc))
            view.rows = False
            for watched in engine.sessions.values():
                watched.plan.by_row = False
        return []
    view.rows_failures = 0
    rows_served(engine, view)
    view.note_rows(rows.values())
    return list(rows.values())


def rows_served(engine: Engine, view: FeedView) -> None:
    """The server serves the app-wide sessions listing: the feed reads it every pass, and its rows bring each
    fed session's status, which no longer reads its own."""
    if view.rows is None:
        view.rows = True
        for watched in engine.sessions.values():
            if watched.plan.mode == "fed":
                watched.plan.by_row = True


def route(
    engine: Engine,
    by_session: dict[str, list[Event]],
    rows: Sequence[Session],
    at: datetime,
    rows_at: datetime | None,
) -> None:
    """Feed each watched session its row and its events of this pass, which began at ``at``, its rows answered at
    ``rows_at`` (waiting with them while its own read is running, for that read to take them in order)."""
    moved = {row.id: row for row in rows if row.id in engine.sessions}
    for session_id in {*by_session, *moved}:
        watched = engine.sessions.get(session_id)
        if watched is None or watched.plan.mode != "fed":
            continue
        events = by_session.get(session_id, [])
        row = moved.get(session_id)
        if row is not None:
            watched.row, watched.row_at = Row.of(row), rows_at
        if watched.busy or not watched.started or watched.catching_up:
            if events:
                watched.pending = [*(watched.pending or ()), *events]  # fed with its own read, in order
            continue
        tracker = watched.tracker
        fresh = [e for e in events if not tracker.knows(e)]
        if not fresh and row is None:
            continue
        status, started_at = (row.status, row.started_at) if row is not None else (None, None)
        engine.emit_session(watched, tracker.feed(status, events, at, started_at=started_at, status_at=rows_at))
        if not watched.alive:
            continue
        if announces(fresh, engine.table):
            watched.plan.announced = True
        if watched.plan.announced or tracker.release_at is not None:
            engine.schedule(watched, engine.next_due(watched))


def feed_failed(engine: Engine, exc: SigmaError) -> None:
    """The feed cannot go on. ``poll="feed"`` asked for it: the monitor ends with the error (a refusal as
    ``FeedRefused``). ``"auto"``: one WARNING, and every session is polled on its own from now on."""
    if refuses_feed(exc) or isinstance(exc, FeedRefused):
        failure: SigmaError = exc if isinstance(exc, FeedRefused) else FeedRefused(
            f"the server does not serve app-wide event listings ({describe(exc)})"
        )
        if failure is not exc:
            failure.__cause__ = exc
    else:
        failure = exc  # bad credentials, say: the sessions' own reads would end the same way
    if engine.poll == "feed":
        engine.end_with(failure)
        return
    logger.warning("monitor: %s; polling each session on its own instead (poll='lean')", failure)
    engine.unpark()  # every session is scheduled below
    if engine.feed is not None:
        engine.feed.alive = False
    engine.feed = None
    now = engine.now()
    for watched in engine.sessions.values():
        watched.plan.mode = "lean"
        watched.plan.by_row = not watched.direct
        if not watched.busy:
            engine.schedule(watched, now + (random.uniform(0, engine.interval) if engine.stagger else 0.0))
