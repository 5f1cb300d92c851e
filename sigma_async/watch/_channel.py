"""Watching a channel: each of its sessions in turn, the ones that came and went between two polls included."""

from __future__ import annotations

import random
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from datetime import datetime, timezone

import anyio

from .._protocol import check_id
from ..errors import SigmaError, WatchError
from ..models import Session
from ..transitions import Transition
from ._api import WatchClient
from ._kinds import DEFAULT_TABLE, KindTable
from ._plan import DEFAULT_STATUS_EVERY, SessionPlan, check_poll_mode
from ._reads import FAILED, Outage, read_new_events
from ._session import check_interval, poll_session
from ._tracker import SessionTracker

__all__ = ["Claim", "SinceFor", "watch_channel"]

#: ``claim(session_id)``: may this channel watch report that session? (A monitor says no when it watches the
#: session directly.)
Claim = Callable[[str], bool]
#: ``since_for(session_id)``: the cursor to resume that session from, if any.
SinceFor = Callable[[str], "str | None"]

# Sessions read back when a channel's newest session is not the one being followed: those created in between
# came and went between two polls.
_BACKFILL_PAGE = 20


def watch_channel(
    client: WatchClient,
    channel_id: str,
    *,
    interval: float = 2.0,
    max_silence: float | None = None,
    table: KindTable = DEFAULT_TABLE,
    jitter: float = 0.1,
    first_delay: float = 0.0,
    poll: str = "lean",
    status_every: int = DEFAULT_STATUS_EVERY,
    since_for: SinceFor | None = None,
    claim: Claim | None = None,
) -> AsyncGenerator[Transition, None]:
    """Yield the transitions of each session of a channel in turn, oldest session first.

    Runs until cancelled or broken out of: when a session ends, it waits for the channel's next one. A deleted
    channel raises ``NotFoundError``. ``poll="lean"`` (the default) costs one request per interval while
    nothing changes: the channel's newest session from the sessions listing (``perPage=1``) carries its status
    and ``updatedAt``, and its events are read only when that moved (or every ``status_every`` polls). A
    session that started and ended between two polls is found in the listing and reported too.
    ``poll="full"`` follows ``current_session_id`` from ``channels.get`` and polls that session fully.
    """
    check_interval(interval, jitter)
    check_poll_mode(poll, feed_allowed=False)
    check_id(channel_id, "channel id")
    follower = _Follower(client, channel_id, interval, jitter, table, status_every, since_for, claim)
    return _watch_channel(follower, poll == "full", max_silence, first_delay)


async def _watch_channel(
    follower: _Follower, full: bool, max_silence: float | None, first_delay: float
) -> AsyncGenerator[Transition, None]:
    outage = Outage(f"channel {follower.channel_id}", follower.interval, max_silence)
    if first_delay > 0:
        await anyio.sleep(first_delay)
    while True:
        batch = await outage.attempt(follower.poll_full if full else follower.poll_lean)
        if batch is FAILED:
            continue
        for transition in batch:
            yield transition
        async for transition in follower.finish_queued(outage):
            yield transition
        await follower.sleep()


class _Follower:
    """The sessions a channel watch follows: the current one, and any found in between, oldest first."""

    def __init__(
        self,
        client: WatchClient,
        channel_id: str,
        interval: float,
        jitter: float,
        table: KindTable,
        status_every: int,
        since_for: SinceFor | None,
        claim: Claim | None,
    ) -> None:
        self.client = client
        self.channel_id = channel_id
        self.interval = interval
        self.jitter = jitter
        self.table = table
        self.status_every = status_every
        self.since_for = since_for
        self.claim = claim
        self.current: SessionTracker | None = None
        self.current_plan = SessionPlan("lean", status_every=status_every)
        self.current_updated: datetime | None = None
        self.horizon: datetime | None = None  # createdAt of the newest session taken up
        self.looked = False  # the first poll takes up only the newest session: what came before is history
        self.done: set[str] = set()  # sessions finished (or left to a direct watch), the newest few
        self.queue: list[SessionTracker] = []  # sessions to run to their end before the current one

    async def sleep(self) -> None:
        await anyio.sleep(self.interval * random.uniform(1.0 - self.jitter, 1.0 + self.jitter))

    # -- full: current_session_id ------------------------------------------------------------------------------

    async def poll_full(self) -> list[Transition]:
        session_id = (await self.client.channels.get(self.channel_id)).current_session_id
        if session_id and session_id not in self.done:
            tracker = self._take_up(_server_id(session_id, self.channel_id))
            if tracker is not None:
                self.queue.append(tracker)
        return []

    # -- lean: the newest session of the listing ----------------------------------------------------------------

    async def poll_lean(self) -> list[Transition]:
        page = await self.client.sessions.list(self.channel_id, page=1, per_page=1)
        newest = page.data[0] if page.data else None
        first_look, self.looked = not self.looked, True
        if newest is None or not newest.id:
            if first_look:
                self.horizon = _EPOCH  # no session yet: every one from now on is news
            return []
        _server_id(newest.id, self.channel_id)
        if self.current is not None and newest.id == self.current.session_id:
            return await self._drive_current(newest)
        if newest.id in self.done:
            return []
        if self.current is not None:
            self.queue.append(self.current)  # ran past: finish it with full polls, then the newer ones
            self.current = None
        for session in await self._sessions_since(newest, first_look):
            self._note_taken(session)
            tracker = self._take_up(session.id)
            if tracker is None:
                continue
            if session.id == newest.id:
                self.current, self.current_updated = tracker, None
                self.current_plan = SessionPlan("lean", status_every=self.status_every)
            else:
                self.queue.append(tracker)
        if self.current is not None and not self.queue:
            return await self._drive_current(newest)
        return []

    async def _drive_current(self, newest: Session) -> list[Transition]:
        tracker = self.current
        assert tracker is not None
        moved = newest.updated_at is None or newest.updated_at != self.current_updated
        due = self.current_plan.first_reads(tracker.awaiting_final_events).status  # every few polls regardless
        events = await read_new_events(self.client, tracker) if (moved or due or tracker.awaiting_final_events) else []
        self.current_plan.polled(True)
        self.current_updated = newest.updated_at
        out = tracker.feed(newest.status, events, _now(), started_at=newest.started_at)
        if tracker.ended:
            self._finish(tracker)
        return out

    async def _sessions_since(self, newest: Session, first_look: bool) -> list[Session]:
        """The sessions to take up, oldest first: on the first look only the newest (if not over, or resumable);
        later every one created after the last taken up."""
        if first_look:
            resumable = self.since_for is not None and self.since_for(newest.id) is not None
            return [newest] if resumable or (newest.status or "").lower() != "ended" else []
        page = await self.client.sessions.list(self.channel_id, page=1, per_page=_BACKFILL_PAGE)
        horizon = self.horizon
        found = [
            s for s in page.data
            if s.id and s.id not in self.done and s.id != newest.id
            and (horizon is None or s.created_at is None or s.created_at > horizon)
        ]  # fmt: skip
        if newest.id not in {s.id for s in found}:
            found.append(newest)
        for s in found:
            _server_id(s.id, self.channel_id)
        return sorted(found, key=lambda s: (s.created_at or _EPOCH, s.id))

    def _take_up(self, session_id: str) -> SessionTracker | None:
        if self.claim is not None and not self.claim(session_id):
            self.done.add(session_id)  # watched directly by the same monitor: reported there, once
            return None
        since = self.since_for(session_id) if self.since_for is not None else None
        tracker = SessionTracker(session_id, channel_id=self.channel_id, since=since, table=self.table)
        return tracker

    def _finish(self, tracker: SessionTracker) -> None:
        self.done.add(tracker.session_id)
        if len(self.done) > 64:
            self.done.discard(next(iter(self.done)))
        if self.current is tracker:
            self.current = None

    async def finish_queued(self, outage: Outage) -> AsyncIterator[Transition]:
        """Run each queued session to its end with full polls, oldest first; then the current one goes on."""
        while self.queue:
            tracker = self.queue[0]
            plan = SessionPlan("full")
            while not tracker.ended:
                try:
                    status, events, _ = await poll_session(self.client, tracker, plan)
                except SigmaError as exc:
                    await anyio.sleep(outage.delay_after(exc))
                    continue
                outage.end()
                for transition in tracker.feed(status, events, _now()):
                    yield transition
                if not tracker.ended:
                    await self.sleep()
            self.queue.pop(0)
            self._finish(tracker)

    def _note_taken(self, session: Session) -> None:
        if session.created_at is not None and (self.horizon is None or session.created_at > self.horizon):
            self.horizon = session.created_at


def _server_id(session_id: str, channel_id: str) -> str:
    # An id from the server goes into the next URL: one that is not a plain path segment ends this watch with a
    # SigmaError (the monitor's on_error hears of it), never a bare ValueError that would end every watch.
    try:
        return check_id(session_id, "session id")
    except ValueError as exc:
        raise WatchError(f"channel {channel_id}: the server named a malformed session id {session_id[:40]!r}") from exc


def _now() -> datetime:
    return datetime.now(timezone.utc)


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
