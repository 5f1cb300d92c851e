"""The relay's runner: a monitor's transitions, delivered to a sink one session at a time, cursors saved after.

>>> async with SigmaClient.from_env() as client:
...     relay = Relay(client, WebhookSink(url, secret=secret), FileCursorStore("cursors.json"),
...                   session_ids=ids, channel_ids=channels)
...     await relay.run()          # until every session has ended, or relay.stop()
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup, TaskStatus

from .._protocol import check_id
from ..errors import AuthenticationError, PermissionDeniedError, SigmaError
from ..transitions import Transition
from ._base import CursorStore, Observer, Outcome, Ownership, OwnEverything, Sink, channel_key, parse_key, session_key
from ._records import encode_record
from ._stores import MemoryCursorStore

if TYPE_CHECKING:
    from .._client import SigmaClient
    from ..watch import Monitor

__all__ = ["Backoff", "Relay", "RelayStats"]

logger = logging.getLogger("sigma_async")

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class Backoff:
    """Waits between attempts at one record (or one cursor save): ``initial`` doubling to ``maximum``, ±``jitter``."""

    initial: float = 0.5
    maximum: float = 30.0
    jitter: float = 0.2

    def delay(self, attempt: int, hint: float | None = None) -> float:
        """Seconds before attempt ``attempt + 1``; a destination's own ``Retry-After`` hint is a floor."""
        base = min(self.maximum, self.initial * 2.0 ** min(attempt - 1, 30))
        wait = base * random.uniform(1 - self.jitter, 1 + self.jitter)
        return max(wait, min(float(hint), self.maximum * 10)) if hint else wait


@dataclass
class RelayStats:
    """What the relay has done so far: records accepted, rejected (skipped) and attempts retried."""

    delivered: int = 0
    rejected: int = 0
    retried: int = 0


class _Lane:
    """One session's records waiting to go out, in order, and its cursor waiting to be saved.

    At most one task delivers (``busy``) and one saves (``saving``) at a time, so records go out in order and
    cursors are saved in order; the lane is forgotten once both are idle and nothing is queued.
    """

    __slots__ = ("busy", "key", "queue", "saving", "session_id", "unsaved")

    def __init__(self, session_id: str, key: str) -> None:
        self.session_id = session_id
        self.key = key  # the watch key it is delivered under: what fence() is asked about
        self.queue: deque[Transition] = deque()
        self.busy = False
        self.saving = False
        self.unsaved: str | None = None  # the cursor of the last record taken, not yet saved


class Relay:
    """Watches sessions and channels and delivers every transition to ``sink``, per session in order.

    Each session's next record waits until the sink has accepted (or rejected) the previous one; a sink that
    raises is retried with ``backoff`` for ever, holding back only that session. After each acceptance the
    session's cursor is saved to ``store`` (while the next records go out; cursors accepted during a save
    collapse into the latest), and ``run()`` resumes every session from its saved cursor, so a crash loses
    nothing: what was accepted but not yet saved goes out again, with the same ``id``.

    ``run()`` returns when nothing is left to watch (every session ended and delivered, no channel watched) or
    after ``stop()``: then the deliveries in flight finish (and their cursors are saved) and the rest is left for
    the next run. ``ownership`` decides which watch keys this process takes (replicas); by default all of them.
    ``monitor_kw`` goes to ``client.monitor`` (``poll=``, ``max_silence=``, ...). ``sleep`` and ``now`` (unix
    seconds) are the clock: inject them and retry waits and lag figures follow a test's own time.
    """

    def __init__(
        self,
        client: SigmaClient,
        sink: Sink,
        store: CursorStore | None = None,
        *,
        session_ids: Iterable[str] = (),
        channel_ids: Iterable[str] = (),
        interval: float = 2.0,
        ownership: Ownership | None = None,
        observer: Observer | None = None,
        backoff: Backoff | None = None,
        max_pending: int = 10_000,
        sleep: Sleep = anyio.sleep,
        now: Callable[[], float] = time.time,
        **monitor_kw: Any,
    ) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        self.client = client
        self.sink = sink
        self.store: CursorStore = store if store is not None else MemoryCursorStore()
        # Checked here, at the call, rather than inside the running monitor. dict.fromkeys: given order, each once.
        sessions = [session_key(check_id(s, "session id")) for s in session_ids]
        channels = [channel_key(check_id(c, "channel id")) for c in channel_ids]
        self.keys = list(dict.fromkeys(sessions + channels))
        self.interval = interval
        self.ownership: Ownership = ownership or OwnEverything()
        self.observer = observer
        self.backoff = backoff or Backoff()
        self.stats = RelayStats()
        #: Watches that failed for good (401/403/404, max_silence), by watch id; they are not retried.
        self.failures: dict[str, SigmaError] = {}
        self._max_pending = max_pending
        self._sleep = sleep
        self._now = now
        self._monitor_kw = monitor_kw
        self._owned: set[str] = set()
        self._lanes: dict[str, _Lane] = {}
        self._pending = 0
        self._room = anyio.Event()
        self._waits: set[anyio.CancelScope] = set()
        self._intake = anyio.CancelScope()
        self._monitor: Monitor | None = None
        self._lanes_tg: TaskGroup | None = None
        self._stopping = False
        self._closing = False
        self._fatal: SigmaError | None = None

    # -- running ----------------------------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Relay until nothing is left to watch or ``stop()``; ``task_status.started()`` once the keys are taken.

        Closes the sink and the store before returning. Raises the first fatal error (401/403 from the API).
        """
        try:
            # Sessions a channel watch reaches resume from these; the monitor reads them as they are now, so a
            # channel taken over later from another replica resumes its sessions from this run's start: repeats,
            # with the same ids, but nothing lost.
            cursors = await self.store.load_all()
            self._monitor = self.client.monitor(
                interval=self.interval, stay_open=self.ownership.stays_open, on_error=self._watch_failed,
                cursors=cursors, **self._monitor_kw,
            )
            async with anyio.create_task_group() as outer:
                # Keys taken before the monitor starts are queued in it, so a static list is complete at start.
                await outer.start(self._own)
                task_status.started()
                async with anyio.create_task_group() as lanes:
                    self._lanes_tg = lanes
                    async with self._monitor as monitor:
                        with self._intake:
                            async for transition in monitor:
                                await self._enqueue(transition)
                    self._closing = True
                # Every lane has drained (or stopped after its delivery in flight): ownership can go.
                outer.cancel_scope.cancel()
        finally:
            self._closing = True
            with anyio.CancelScope(shield=True):
                await self._close_quietly()
        if self._fatal is not None:
            raise self._fatal

    def stop(self) -> None:
        """Stop watching; deliveries in flight finish and save their cursors, then ``run()`` returns."""
        self._stopping = True
        self._intake.cancel()
        for scope in list(self._waits):
            scope.cancel()
        self._room.set()

    async def _own(self, *, task_status: TaskStatus[None]) -> None:
        await self.ownership.run(self.keys, self, task_status=task_status)

    # -- Claims: what ownership calls ------------------------------------------------------------------------

    async def acquire(self, key: str) -> None:
        """Watch ``key`` here from its saved cursors (see ``Claims``)."""
        kind, ident = parse_key(key)
        if key in self._owned or self._closing or self._monitor is None:
            return
        self._owned.add(key)
        if kind == "session":
            # Read now, not at start: another replica may have moved this session on since.
            self._monitor.add_session(ident, since=await self.store.load(ident))
        else:
            self._monitor.add_channel(ident)

    async def release(self, key: str) -> None:
        """Stop watching ``key`` here; its queued records are dropped unsaved (see ``Claims``)."""
        kind, ident = parse_key(key)
        self._owned.discard(key)
        if self._monitor is not None and not self._closing:
            if kind == "session":
                self._monitor.remove_session(ident)
            else:
                self._monitor.remove_channel(ident)
        for lane in self._lanes.values():
            if lane.key == key:
                self._drop(lane)

    # -- delivering --------------------------------------------------------------------------------------------

    async def _enqueue(self, transition: Transition) -> None:
        while self._pending >= self._max_pending and not self._stopping:
            # Back-pressure: a sink that is down for long holds the watches back instead of filling memory.
            self._room = anyio.Event()
            await self._room.wait()
        sid = transition.session_id
        lane = self._lanes.get(sid)
        if lane is None:
            lane = self._lanes[sid] = _Lane(sid, self._key_for(transition))
        lane.queue.append(transition)
        self._pending += 1
        if not lane.busy and self._lanes_tg is not None:
            lane.busy = True
            self._lanes_tg.start_soon(self._drain, lane, name=f"sigma-async relay {sid}")

    def _key_for(self, transition: Transition) -> str:
        direct = session_key(transition.session_id)
        if direct in self._owned or transition.channel_id is None:
            return direct
        return channel_key(transition.channel_id)

    async def _drain(self, lane: _Lane) -> None:
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

    def _forget_if_idle(self, lane: _Lane) -> None:
        if not lane.queue and not lane.busy and not lane.saving and self._lanes.get(lane.session_id) is lane:
            del self._lanes[lane.session_id]

    async def _deliver(self, lane: _Lane, transition: Transition) -> bool:
        """Deliver one record until it is accepted or rejected, then have its cursor saved; False if stopped."""
        record = encode_record(transition)
        attempt = 0
        while True:
            try:
                outcome = await self.sink.deliver(record, transition)
                break
            except Exception as exc:
                attempt += 1
                self.stats.retried += 1
                if self.observer is not None:
                    self.observer.retried(transition, exc)
                # The first failure and then every tenth: an outage of hours must not flood the log.
                log = logger.warning if attempt == 1 or attempt % 10 == 0 else logger.debug
                log("relay: %s %s of session %s not delivered (attempt %d): %s",
                    transition.kind, transition.id, transition.session_id, attempt, _describe(exc))
                if not await self._wait(self.backoff.delay(attempt, getattr(exc, "retry_after", None))):
                    return False
        self._record(transition, outcome)
        # The next record goes out while this cursor is saved: a save waits for the store (an fsync, a round
        # trip), delivery waits only for the sink. Cursors saved while one save is in flight collapse into the
        # latest, so a burst of one session costs one save, not one per record.
        lane.unsaved = transition.cursor
        if not lane.saving and self._lanes_tg is not None:
            lane.saving = True
            self._lanes_tg.start_soon(self._save_latest, lane, name=f"sigma-async relay save {lane.session_id}")
        return True

    def _record(self, transition: Transition, outcome: Outcome) -> None:
        if outcome.accepted:
            self.stats.delivered += 1
            if self.observer is not None:
                self.observer.delivered(transition, max(0.0, self._now() - transition.at.timestamp()))
            return
        self.stats.rejected += 1
        if self.observer is not None:
            self.observer.rejected(transition, outcome.detail)
        logger.warning("relay: %s %s of session %s rejected, skipped: %s",
                       transition.kind, transition.id, transition.session_id, outcome.detail)

    async def _save_latest(self, lane: _Lane) -> None:
        try:
            while lane.unsaved is not None:
                cursor, lane.unsaved = lane.unsaved, None
                if not await self._save(lane, cursor):
                    break
        finally:
            lane.saving = False
            self._forget_if_idle(lane)

    async def _save(self, lane: _Lane, cursor: str) -> bool:
        """Save one session's cursor if this process still owns its watch; False if it stopped trying."""
        try:
            owned = await self.ownership.fence(lane.key)
        except Exception as exc:
            # Ownership cannot tell now: not saving is the safe side (a later save covers this one).
            logger.warning("relay: cannot check ownership of %s, cursor of session %s not saved: %s",
                           lane.key, lane.session_id, _describe(exc))
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
                await self.store.save(lane.session_id, cursor)
                return True
            except Exception as exc:
                attempt += 1
                logger.warning("relay: cursor of session %s not saved (attempt %d): %s",
                               lane.session_id, attempt, _describe(exc))
                if not await self._wait(self.backoff.delay(attempt)):
                    return False  # accepted but not saved: the next run sends it again, with the same id

    async def _wait(self, seconds: float) -> bool:
        """Sleep unless stopped; False if ``stop()`` came first."""
        if self._stopping:
            return False
        with anyio.CancelScope() as scope:
            self._waits.add(scope)
            try:
                await self._sleep(seconds)
            finally:
                self._waits.discard(scope)
        return not self._stopping

    def _drop(self, lane: _Lane) -> None:
        # Left for the key's next owner. A record in flight finishes; _drain sees it gone and does not pop.
        dropped = len(lane.queue)
        lane.queue.clear()
        self._taken(dropped)

    def _taken(self, count: int) -> None:
        self._pending -= count
        if self._pending < self._max_pending:
            self._room.set()

    def _watch_failed(self, ident: str, exc: SigmaError) -> None:
        self.failures[ident] = exc
        logger.error("relay: watch of %s stopped: %s", ident, _describe(exc))
        if isinstance(exc, (AuthenticationError, PermissionDeniedError)) and self._fatal is None:
            # Every other watch would fail the same way: stop, after what is in flight.
            self._fatal = exc
            self.stop()

    async def _close_quietly(self) -> None:
        for part in (self.sink, self.store):
            try:
                await part.aclose()
            except Exception as exc:
                logger.warning("relay: closing %r failed: %s", part, _describe(exc))


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
