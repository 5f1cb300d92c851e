"""The relay's runner: a monitor's transitions, delivered to a sink one session at a time, cursors saved after.

>>> async with SigmaClient.from_env() as client:
...     relay = Relay(client, WebhookSink(url, secret=secret), FileCursorStore("cursors.json"),
...                   session_ids=ids, channel_ids=channels)
...     await relay.run()          # until every session has ended, or relay.stop()
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup, TaskStatus

from .._protocol import check_id
from ..errors import AuthenticationError, PermissionDeniedError, SigmaError, WatchError
from ..transitions import Transition
from ..watch._cursor import decode_cursor
from ._base import (
    DONE,
    CursorStore,
    Observer,
    Ownership,
    OwnEverything,
    Sink,
    StoreLostError,
    channel_key,
    parse_key,
    session_key,
)
from ._delivery import Backoff, Outage, RelayStats, describe
from ._lanes import Lane, LaneWork, Sleep
from ._stores import MemoryCursorStore

if TYPE_CHECKING:
    from .._client import SigmaClient
    from ..watch import Monitor

__all__ = ["Backoff", "Relay", "RelayStats"]

logger = logging.getLogger("sigma_async")


class Relay(LaneWork):
    """Watches sessions and channels and delivers every transition to ``sink``, per session in order.

    Each session's next record waits until the sink has accepted (or rejected) the previous one; a sink that
    raises is retried with ``backoff`` for ever, holding back only that session, with one WARNING per outage. A
    record the sink rejects for good goes to ``dead_letter`` (any sink) with the sink's answer, or, without one,
    to the log at ERROR: never silently dropped. After each record the session's cursor is saved to ``store``
    (while the next records go out; cursors accepted during a save collapse into the latest), and ``run()``
    resumes every session from its saved cursor, so a crash loses nothing: what was accepted but not yet saved
    goes out again, with the same ``id``. Once a session's ``Ended`` went out, the store keeps ``DONE`` in its
    place (a session reached through a channel keeps nothing) and no run watches it again.

    ``run()`` returns when nothing is left to watch (every session ended and delivered, no channel watched) or
    after ``stop()``: then the deliveries in flight finish (and their cursors are saved) and the rest is left for
    the next run. ``ownership`` decides which watch keys this process takes (replicas); by default all of them.
    ``session_channels`` maps a session id to its channel, for the records' ``channel_id`` (the API gives no way
    to read a session's channel). ``monitor_kw`` goes to ``client.monitor`` (``poll=``, ``max_silence=``, ...).
    ``sleep`` and ``now`` (unix seconds) are the clock: inject them and retry waits and lag figures follow a
    test's own time.
    """

    def __init__(
        self,
        client: SigmaClient,
        sink: Sink,
        store: CursorStore | None = None,
        *,
        session_ids: Iterable[str] = (),
        channel_ids: Iterable[str] = (),
        session_channels: Mapping[str, str] | None = None,
        interval: float = 2.0,
        ownership: Ownership | None = None,
        observer: Observer | None = None,
        dead_letter: Sink | None = None,
        backoff: Backoff | None = None,
        max_pending: int = 10_000,
        sleep: Sleep = anyio.sleep,
        now: Callable[[], float] = time.time,
        **monitor_kw: Any,
    ) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        if not (interval > 0 and math.isfinite(interval)):
            raise ValueError(f"interval must be a number of seconds > 0, got {interval!r}")
        self.client = client
        self.sink = sink
        self.store: CursorStore = store if store is not None else MemoryCursorStore()
        self.dead_letter = dead_letter
        # Checked here, at the call, rather than inside the running monitor. dict.fromkeys: given order, each once.
        sessions = [session_key(check_id(s, "session id")) for s in session_ids]
        channels = [channel_key(check_id(c, "channel id")) for c in channel_ids]
        self.keys = list(dict.fromkeys(sessions + channels))
        self._channel_of = {
            check_id(s, "session id"): check_id(c, "channel id") for s, c in (session_channels or {}).items()
        }
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
        self._outages = {id(sink): Outage(f"the sink {sink!r}", self.stats)}
        if dead_letter is not None:
            self._outages[id(dead_letter)] = Outage(f"the dead-letter {dead_letter!r}", self.stats)
        self._cursors: dict[str, str] = {}
        self._channel_ends: dict[str, str] = {}  # channel id -> its newest ended session, kept as its marker
        self._owned: set[str] = set()
        self._lanes: dict[str, Lane] = {}
        self._pending = 0
        self._room = anyio.Event()
        self._settled = anyio.Event()
        self._waits: set[anyio.CancelScope] = set()
        self._intake = anyio.CancelScope()
        self._monitor: Monitor | None = None
        self._lanes_tg: TaskGroup | None = None
        self._stopping = False
        self._closing = False
        self._fatal: Exception | None = None
        self._unsent_said = -math.inf

    # -- running ----------------------------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Relay until nothing is left to watch or ``stop()``; ``task_status.started()`` once the keys are taken.

        Closes the sink, the dead-letter and the store before returning. Raises the first fatal error: 401/403
        from the API, or ``StoreLostError``.
        """
        try:
            # Sessions a channel watch reaches resume from these (the monitor reads this dict as it is then).
            self._cursors = await self._load_cursors(prune=True)
            self._monitor = self.client.monitor(
                interval=self.interval, stay_open=self.ownership.stays_open, on_error=self._watch_failed,
                cursors=self._cursors, **self._monitor_kw,
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
                        self._closing = True  # the monitor takes no more watches from here on
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
        ready = _Ready(task_status)
        try:
            await self.ownership.run(self.keys, self, task_status=ready)
        except StoreLostError as exc:
            self._fail(exc)
        else:
            if self.ownership.stays_open:
                self.stop()  # its run() returned by itself: every key is done
        ready.started()

    async def _load_cursors(self, *, prune: bool = False) -> dict[str, str]:
        """The store's cursors, without done-markers; ``prune`` drops the markers of sessions no longer listed,
        and all but the newest ended cursor of each channel (a crash between a save and a drop leaves two)."""
        loaded = await self.store.load_all()
        if prune:
            for sid, value in loaded.items():
                if value == DONE and session_key(sid) not in self.keys:
                    await self.store.drop(sid)  # the store follows the watch list, not the history
            for sid in _older_channel_ends(loaded, self._channel_ends):
                await self.store.drop(sid)
                loaded.pop(sid)
        return {sid: value for sid, value in loaded.items() if value != DONE}

    # -- Claims: what ownership calls ------------------------------------------------------------------------

    async def acquire(self, key: str) -> None:
        """Watch ``key`` here from its saved cursors (see ``Claims``); a done session is finished instead."""
        kind, ident = parse_key(key)
        if key in self._owned or self._closing or self._stopping or self._monitor is None:
            return
        self._owned.add(key)
        if kind == "session":
            # Read now, not at start: another replica may have moved this session on since.
            since = await self.store.load(ident)
            if key not in self._owned or self._closing or self._stopping:
                return  # released (or stopped) while reading
            if since is not None and since != DONE and _is_ended(since, ident):
                await self.store.save(ident, DONE)  # its channel's marker, and now listed: done is done
                since = DONE
            if since == DONE:
                self._owned.discard(key)
                await self._finish(key)
                return
            try:
                self._monitor.add_session(ident, since=since, channel_id=self._channel_of.get(ident))
            except ValueError as exc:  # a damaged cursor in the store: that watch alone cannot go on
                self._watch_failed(ident, WatchError(f"the store's cursor of session {ident}: {exc}"))
        else:
            if self.ownership.stays_open:
                # Taken over from another replica, maybe: its sessions resume from what the store holds now.
                fresh = await self._load_cursors()
                self._cursors.clear()
                self._cursors.update(fresh)
            try:
                self._monitor.add_channel(ident)
            except ValueError as exc:  # a damaged cursor in the store, of one of its sessions
                self._watch_failed(ident, WatchError(f"channel {ident}: {exc}"))

    async def release(self, key: str, *, settle: float = 0.0) -> None:
        """Stop watching ``key`` here; its queued records are dropped unsaved (see ``Claims``).

        With ``settle``, wait up to that many seconds for the delivery in flight to finish and its cursor to be
        saved: the next owner then starts after that record instead of sending it again.
        """
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
                for scope in list(lane.waiting):
                    scope.cancel()  # a record being retried is not sent again here
        with anyio.move_on_after(settle):
            while settle > 0 and any(lane.key == key for lane in self._lanes.values()):
                if self._settled.is_set():  # shared by every release waiting now: renewed once all have seen it
                    self._settled = anyio.Event()
                await self._settled.wait()

    # -- delivering --------------------------------------------------------------------------------------------

    async def _enqueue(self, transition: Transition) -> None:
        while self._pending >= self._max_pending and not self._stopping:
            # Back-pressure: a sink that is down for long holds the watches back instead of filling memory.
            self._room = anyio.Event()
            await self._room.wait()
        sid = transition.session_id
        lane = self._lanes.get(sid)
        if lane is None:
            lane = self._lanes[sid] = Lane(sid, self._key_for(transition))
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

    def _watch_failed(self, ident: str, exc: SigmaError) -> None:
        self.failures[ident] = exc
        logger.error("relay: watch of %s stopped: %s", ident, describe(exc))
        if isinstance(exc, (AuthenticationError, PermissionDeniedError)):
            # Every other watch would fail the same way: stop, after what is in flight.
            self._fail(exc)

    def _fail(self, exc: Exception) -> None:
        if self._fatal is None:
            self._fatal = exc
            self.stop()

    async def _close_quietly(self) -> None:
        for part in (self.sink, self.dead_letter, self.store):
            if part is None:
                continue
            try:
                await part.aclose()
            except Exception as exc:
                logger.warning("relay: closing %r failed: %s", part, describe(exc))


class _Ready:
    """Passes ``started()`` on once, so that an ownership that ends before it (every key done, a store lost)
    still lets ``run()`` go on to finish."""

    def __init__(self, task_status: TaskStatus[None]) -> None:
        self._task_status = task_status
        self._done = False

    def started(self, value: None = None) -> None:
        if not self._done:
            self._done = True
            self._task_status.started()


def _older_channel_ends(cursors: dict[str, str], newest: dict[str, str]) -> list[str]:
    """The ended cursors of channel sessions but the newest of each channel (recorded in ``newest``)."""
    ended: dict[str, list[tuple[datetime, str]]] = {}
    for sid, cursor in cursors.items():
        if cursor == DONE:
            continue
        try:
            c = decode_cursor(cursor, sid)
        except ValueError:
            continue  # the watch will say so when it is given this one
        if c.k == "ended" and c.c is not None and c.ca is not None:
            ended.setdefault(c.c, []).append((c.ca, sid))
    older = []
    for channel_id, sessions in ended.items():
        sessions.sort()
        newest[channel_id] = sessions[-1][1]
        older += [sid for _, sid in sessions[:-1]]
    return older


def _is_ended(cursor: str, session_id: str) -> bool:
    try:
        return decode_cursor(cursor, session_id).k == "ended"
    except ValueError:
        return False  # the watch will say what is wrong with it
