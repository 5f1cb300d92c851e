"""The feed's part of the engine: read the app-wide listing on a fixed beat, route each event to its session.

Pure decisions (the probe's checks, where a read stops, who gets what) are ``_feed.FeedView``'s; this is the I/O
and what the engine does with it.
"""

from __future__ import annotations

import logging
import random
from typing import TYPE_CHECKING

from ..errors import SigmaError
from ..models import Event
from ._feed import FEED_PAGE_SIZE, FeedRefused, refuses_feed
from ._items import WatchedFeed
from ._plan import announces
from ._reads import describe, read_back

if TYPE_CHECKING:
    from ._engine import Engine

__all__ = ["feed_failed", "poll_feed", "route"]

logger = logging.getLogger("sigma_async")


async def poll_feed(engine: Engine, feed: WatchedFeed) -> None:
    """One pass of the feed: the probe first, then every page back to what the last pass read."""
    view = feed.view
    fetch = engine.client.events.list_app
    try:
        if not view.probed:
            page = await engine.guarded(feed, fetch(page=1, per_page=FEED_PAGE_SIZE))
            view.check_probe(page)
            events: list[Event] = []
        else:
            events = await engine.guarded(
                feed, read_back(lambda p, n: fetch(page=p, per_page=n), view.ends_read, FEED_PAGE_SIZE, "the feed")
            )
    except SigmaError as exc:
        feed.busy = False
        if isinstance(exc, FeedRefused) or refuses_feed(exc):
            feed_failed(engine, exc)
        else:
            engine.failed(feed, exc)
        return
    feed.busy = False
    if engine.feed is not feed:
        return
    now = engine.now()
    feed.succeeded(now)
    route(engine, view.take(events))
    # A fixed beat: the time a read takes does not add to the lag of the next; behind the beat, read at once.
    feed.beat = max(feed.beat + engine.interval, now)
    engine.schedule(feed, feed.beat)


def route(engine: Engine, by_session: dict[str, list[Event]]) -> None:
    """Feed each watched session its events of this pass (waiting with them while its own read is running)."""
    at = engine.clock.wall()
    for session_id, events in by_session.items():
        watched = engine.sessions.get(session_id)
        if watched is None or watched.plan.mode != "fed":
            continue
        if watched.busy or not watched.started:
            watched.pending = [*(watched.pending or ()), *events]  # fed with its own read, in order
            continue
        tracker = watched.tracker
        fresh = [e for e in events if not tracker.knows(e)]
        if not fresh:
            continue
        engine.emit_session(watched, tracker.feed(None, events, at))
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
    if engine.feed is not None:
        engine.feed.alive = False
    engine.feed = None
    now = engine.now()
    for watched in engine.sessions.values():
        watched.plan.mode = "lean"
        watched.plan.by_row = not watched.direct
        if not watched.busy:
            engine.schedule(watched, now + (random.uniform(0, engine.interval) if engine.stagger else 0.0))
