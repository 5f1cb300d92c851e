"""One session's records on their way: delivered in order behind the fence, dead-lettered if rejected, and the
session's cursor saved after each (a done-marker after its ``Ended``).

``LaneWork`` is the part of the runner (``Relay``) that does this, one task per busy session; the runner feeds it
transitions and answers its two questions back: ``release``/``acquire`` a watch key (to resume from the store)
and ``_fail`` (a fatal error: stop).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

import anyio
from anyio.abc import TaskGroup

from ..transitions import Transition
from ._base import (
    DONE,
    CursorStore,
    Observer,
    Outcome,
    Ownership,
    Sink,
    StaleCursorError,
    StoreLostError,
    session_key,
)
from ._deadletter import rejection_entry
from ._delivery import Backoff, Outage, RelayStats, describe
from ._records import encode_record

__all__ = ["Lane", "LaneWork", "Sleep"]

logger = logging.getLogger("sigma_async")

Sleep = Callable[[float], Awaitable[None]]


class Lane:
    """One session's records waiting to go out, in order, and its cursor waiting to be saved.

    At most one task delivers (``busy``) and one saves (``saving``) at a time, so records go out in order and
    cursors are saved in order; the lane is forgotten once both are idle and nothing is queued.
    """

    __slots__ = ("busy", "ended_in", "key", "queue", "saving", "session_id", "unsaved", "waiting")

    def __init__(self, session_id: str, key: str) -> None:
        self.session_id = session_id
        self.key = key  # the watch key it is delivered under: what holds() and fence() are asked about
        self.queue: deque[Transition] = deque()
        self.busy = False
        self.saving = False
        self.unsaved: str | None = None  # the cursor of the last record taken (DONE after Ended), not yet saved
        self.ended_in: str | None = None  # the channel whose session ended with the unsaved cursor
        self.waiting: set[anyio.CancelScope] = set()  # backoff waits in progress, cut short when released


class LaneWork:
    """Delivering and saving, per session (see the module doc); ``Relay`` sets these attributes up."""

    sink: Sink
    store: CursorStore
    dead_letter: Sink | None
    ownership: Ownership
    observer: Observer | None
    backoff: Backoff
    stats: RelayStats
    _outages: dict[int, Outage]
    _cursors: dict[str, str]
    _channel_ends: dict[str, str]
    _owned: set[str]
    _lanes: dict[str, Lane]
    _pending: int
    _max_pending: int
    _room: anyio.Event
    _settled: anyio.Event
    _waits: set[anyio.CancelScope]
    _lanes_tg: TaskGroup | None
    _stopping: bool
    _sleep: Sleep
    _now: Callable[[], float]
    _unsent_said: float

    async def acquire(self, key: str) -> None:
        raise NotImplementedError

    async def release(self, key: str, *, settle: float = 0.0) -> None:
        raise NotImplementedError

    def _fail(self, exc: Exception) -> None:
        raise NotImplementedError

    async def _drain(self, lane: Lane) -> None:
        try:
            while lane.queue and not self._stopping:
                transition = lane.queue[0]
                if not await self._deliver(lane, transition):
                    break
                if lane.queue and lane.queue[0] is transition:  # not dropped by release() meanwhile
                    lane.queue.popleft()
                    self._taken(1)
        finally:
            lane.busy = False
            self._forget_if_idle(lane)

    def _forget_if_idle(self, lane: Lane) -> None:
        if not lane.queue and not lane.busy and not lane.saving and self._lanes.get(lane.session_id) is lane:
            del self._lanes[lane.session_id]
            self._settled.set()  # someone may be waiting for this key's lanes to go quiet (release)

    async def _deliver(self, lane: Lane, transition: Transition) -> bool:
        """Deliver one record until it is accepted or dead-lettered, then have its cursor saved; False if not."""
        record = encode_record(transition)
        outcome = await self._send(lane, self.sink, record, transition)
        if outcome is None:
            return False
        self._record(transition, outcome)
        if not outcome.accepted and not await self._reject(lane, record, transition, outcome):
            return False
        # The next record goes out while this cursor is saved: a save waits for the store (an fsync, a round
        # trip), delivery waits only for the sink. Cursors saved while one save is in flight collapse into the
        # latest, so a burst of one session costs one save, not one per record.
        if transition.is_terminal and lane.key != session_key(lane.session_id) and transition.channel_id:
            # Reached through a channel: its Ended cursor is where a restart resumes the channel's listing.
            lane.unsaved, lane.ended_in = transition.cursor, transition.channel_id
        else:
            lane.unsaved = DONE if transition.is_terminal else transition.cursor
        if not lane.saving and self._lanes_tg is not None:
            lane.saving = True
            self._lanes_tg.start_soon(self._save_latest, lane, name=f"sigma-async relay save {lane.session_id}")
        return True

    async def _send(self, lane: Lane, sink: Sink, record: bytes, transition: Transition) -> Outcome | None:
        """``sink.deliver`` until it answers, each attempt behind the fence; None if it must not be sent now."""
        outage = self._outages.get(id(sink)) or Outage(repr(sink), self.stats)
        attempt = 0
        while self._may_send(lane, transition):
            try:
                outcome = await sink.deliver(record, transition)
            except Exception as exc:
                attempt += 1
                self.stats.retried += 1
                if self.observer is not None:
                    self.observer.retried(transition, exc)
                outage.failed(exc)
                logger.debug("relay: %s %s of session %s not delivered (attempt %d): %s",
                             transition.kind, transition.id, transition.session_id, attempt, describe(exc))
                if not await self._wait(self.backoff.delay(attempt, getattr(exc, "retry_after", None)), lane):
                    return None
                continue
            outage.passed()
            return outcome
        return None

    def _may_send(self, lane: Lane, transition: Transition) -> bool:
        if not lane.queue or lane.queue[0] is not transition:
            return False  # released meanwhile (its lease went): the key's next owner sends it
        holds = getattr(self.ownership, "holds", None)
        if holds is None or holds(lane.key):
            return True
        # Paused or starved past the lease's renewal: another replica may own the key and have sent later records.
        # Sending now could put this one after them; the ownership stops the watch and resumes it if still ours.
        now = time.monotonic()
        log = logger.warning if now - self._unsent_said > 1.0 else logger.debug
        self._unsent_said = now
        log("relay: %s may be another replica's by now (its lease was not renewed in time): %s %s of session %s "
            "not sent; the watch resumes from the saved cursor if the lease is still ours",
            lane.key, transition.kind, transition.id, transition.session_id)
        self._drop(lane)
        return False

    def _record(self, transition: Transition, outcome: Outcome) -> None:
        if outcome.accepted:
            self.stats.delivered += 1
            if self.observer is not None:
                self.observer.delivered(transition, max(0.0, self._now() - transition.at.timestamp()))
            return
        self.stats.rejected += 1
        if self.observer is not None:
            self.observer.rejected(transition, outcome.detail)
        where = "to the dead-letter" if self.dead_letter is not None else "logged below"
        logger.warning("relay: %s %s of session %s rejected, %s: %s",
                       transition.kind, transition.id, transition.session_id, where, outcome.detail)

    async def _reject(self, lane: Lane, record: bytes, transition: Transition, outcome: Outcome) -> bool:
        """Put a rejected record in the dead-letter; False if it must not be sent now (the cursor waits)."""
        entry = rejection_entry(record, transition, outcome, sink=repr(self.sink), at=self._now())
        if self.dead_letter is None:
            logger.error("relay: rejected record: %s", entry.decode())
            return True
        answer = await self._send(lane, self.dead_letter, entry, transition)
        if answer is None:
            return False
        if answer.accepted:
            self.stats.dead_lettered += 1
        else:
            logger.error("relay: the dead-letter refused it too (%s): %s", answer.detail, entry.decode())
        return True

    async def _save_latest(self, lane: Lane) -> None:
        try:
            while lane.unsaved is not None:
                cursor, lane.unsaved = lane.unsaved, None
                if not await self._save(lane, cursor):
                    break
        finally:
            lane.saving = False
            self._forget_if_idle(lane)

    async def _save(self, lane: Lane, cursor: str) -> bool:
        """Save one session's cursor if this process still owns its watch; False if it stopped trying."""
        try:
            owned = await self.ownership.fence(lane.key)
        except Exception as exc:
            # Ownership cannot tell now: not saving is the safe side (a later save covers this one).
            logger.warning("relay: cannot check ownership of %s, cursor of session %s not saved: %s",
                           lane.key, lane.session_id, describe(exc))
            return True
        if not owned:
            logger.warning("relay: %s is owned elsewhere now; cursor of session %s not saved",
                           lane.key, lane.session_id)
            lane.unsaved = None
            self._drop(lane)
            return False
        attempt = 0
        while True:
            try:
                await self._write(lane, cursor)
                return True
            except StaleCursorError as exc:
                logger.warning("relay: %s; %s resumes from the store", exc, lane.key)
                lane.unsaved = None
                self._drop(lane)
                await self._resume(lane.key)
                return False
            except StoreLostError as exc:
                self._fail(exc)
                return False
            except Exception as exc:
                attempt += 1
                logger.warning("relay: cursor of session %s not saved (attempt %d): %s",
                               lane.session_id, attempt, describe(exc))
                if not await self._wait(self.backoff.delay(attempt), lane):
                    return False  # accepted but not saved: the next run sends it again, with the same id

    async def _write(self, lane: Lane, cursor: str) -> None:
        sid = lane.session_id
        if lane.ended_in is not None and cursor != DONE:
            await self._channel_ended(sid, lane.ended_in, cursor)
        elif cursor != DONE:
            await self.store.save(sid, cursor)
        elif lane.key == session_key(sid):
            # Watched directly: a done-marker stays while it is listed, and no replica leases it again.
            await self.store.save(sid, DONE)
            self._owned.discard(lane.key)
            await self._finish(lane.key)
        else:
            await self.store.drop(sid)
            self._cursors.pop(sid, None)

    async def _channel_ended(self, sid: str, channel_id: str, cursor: str) -> None:
        """A channel's session ended: its Ended cursor stays, as the one marker of the channel, so that a restart
        reports every session created since (those that came and went while the relay was down); the previous
        marker goes, so the store keeps one ended cursor per channel, not its history."""
        await self.store.save(sid, cursor)
        previous, self._channel_ends[channel_id] = self._channel_ends.get(channel_id), sid
        if previous is not None and previous != sid:
            await self.store.drop(previous)
            self._cursors.pop(previous, None)

    async def _finish(self, key: str) -> None:
        finish = getattr(self.ownership, "finish", None)  # an Ownership written before it had one
        if finish is not None:
            await finish(key)

    async def _resume(self, key: str) -> None:
        """Watch ``key`` again from what the store holds now, if it is still this process's."""
        if key not in self._owned or self._stopping:
            return
        await self.release(key)
        holds = getattr(self.ownership, "holds", None)
        if holds is None or holds(key):
            await self.acquire(key)

    async def _wait(self, seconds: float, lane: Lane) -> bool:
        """Sleep unless stopped; False if ``stop()`` came first (a release only cuts the sleep short)."""
        if self._stopping:
            return False
        with anyio.CancelScope() as scope:
            self._waits.add(scope)
            lane.waiting.add(scope)
            try:
                await self._sleep(seconds)
            finally:
                self._waits.discard(scope)
                lane.waiting.discard(scope)
        return not self._stopping

    def _drop(self, lane: Lane) -> None:
        # Left for the key's next owner. A record in flight finishes; _drain sees it gone and does not pop.
        dropped = len(lane.queue)
        lane.queue.clear()
        self._taken(dropped)

    def _taken(self, count: int) -> None:
        self._pending -= count
        if self._pending < self._max_pending:
            self._room.set()
