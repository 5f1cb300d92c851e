"""A Sigma app in memory on virtual time, and a driver that runs the watch engine on that time.

The server plays a scripted history: sessions of channels opening, going on air, losing and regaining their
signal and ending, each status change visible a little before its event (as item 7 of the second review saw),
plus other sessions' events that only the app-wide feed shows. Every read answers from the history as it
stands at the virtual now; a fault rate turns reads into 503s or dropped connections. The driver jumps the
clock from one timer to the next, so a run of thirty intervals costs milliseconds.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from sigma_async.errors import APIConnectionError, BadRequestError, NotFoundError, ServerError
from sigma_async.models import Channel, ChannelInput, Event, Page, Session, SessionStatus
from sigma_async.transitions import Transition
from sigma_async.watch._engine import Engine

START = datetime(2026, 1, 1, tzinfo=timezone.utc)


class VirtualClock:
    """Monotonic seconds from 0 and a wall clock from ``START``; timers fire only when ``jump`` says so."""

    def __init__(self) -> None:
        self.t = 0.0
        self._timers: list[tuple[float, int, Callable[[], object], _Timer]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self.t

    def wall(self) -> datetime:
        return START + timedelta(seconds=self.t)

    def call_at(self, when: float, callback: Callable[[], object]) -> _Timer:
        timer = _Timer()
        heapq.heappush(self._timers, (when, next(self._seq), callback, timer))
        return timer

    def next_timer(self) -> float | None:
        while self._timers and self._timers[0][3].cancelled:
            heapq.heappop(self._timers)
        return self._timers[0][0] if self._timers else None

    def advance(self, to: float) -> None:
        """Move to ``to`` and fire every timer due by then."""
        self.t = max(self.t, to)
        while (due := self.next_timer()) is not None and due <= self.t:
            _, _, callback, _ = heapq.heappop(self._timers)
            callback()


class _Timer:
    __slots__ = ("cancelled",)

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class SimSession:
    id: str
    channel_id: str
    created_at: datetime
    status: str = "initializing"
    updated_at: datetime | None = None
    started_at: datetime | None = None
    events: list[Event] = field(default_factory=list)


Step = tuple[float, str, str, str]  # (seconds, what, session id, value): "open", "status" or "event"


@dataclass
class History:
    """What the server will do, step by step, and what a watcher should report of each watched session."""

    steps: list[Step]
    channel_id: str
    watched: list[str]  # sessions of ``channel_id``, in the order they open
    expected: dict[str, list[tuple[str, str]]]  # session -> (kind, id) of every transition, in order
    opens: dict[str, float]  # session -> when it opens
    end: float
    # The server's clock steps back: from this time on (if set), everything it writes is stamped back_by earlier.
    back_at: float | None = None
    back_by: float = 0.0


def random_history(rng: random.Random, interval: float) -> History:
    """One channel with one to three sessions in turn, events of actions the SDK does not know among them, and
    another channel's events."""
    steps: list[Step] = []
    expected: dict[str, list[tuple[str, str]]] = {}
    opens: dict[str, float] = {}
    channel = "ch-main"
    ids = (f"ev-{n:05d}" for n in itertools.count())
    t = rng.uniform(0.1, 1.5) * interval
    watched: list[str] = []
    for k in range(rng.randint(1, 3)):
        sid = f"s-{k}"
        watched.append(sid)
        opens[sid] = t
        # What the watch should say, each with the time it happened: sorted into the stream at the end.
        stream: list[tuple[float, str, str]] = [(t, "initializing", f"{sid}/status/initializing")]
        leads: list[tuple[float, float]] = []  # status ahead of its event: no unknown event is written in there
        steps.append((t, "open", sid, channel))
        steps.append((t, "event", sid, f"initialize {next(ids)}"))

        def lag() -> float:
            return rng.choice([0.0, rng.uniform(0.0, 0.4 * interval)])

        def changed(
            sid: str, leads: list[tuple[float, float]], stream: list[tuple[float, str, str]], status: str, action: str,
            kind: str,
        ) -> None:
            nonlocal t
            t += rng.uniform(0.05, 2.5) * interval
            flip = t
            steps.append((t, "status", sid, status))
            t += lag()
            leads.append((flip, t))
            event = next(ids)
            steps.append((t, "event", sid, f"{action} {event}"))
            stream.append((t, kind, f"{sid}/event/{event}"))

        if rng.random() < 0.85:  # an encoder connects: the status first, the start and stable events after
            t += rng.uniform(0.05, 3.0) * interval
            flip = t
            steps.append((t, "status", sid, "live"))
            t += lag()
            steps.append((t, "event", sid, f"start {next(ids)}"))
            stable = next(ids)
            steps.append((t + 0.002, "event", sid, f"stable {stable}"))
            leads.append((flip, t + 0.002))
            stream += [(t, "started", f"{sid}/status/started"), (t + 0.001, "live", f"{sid}/status/live"),
                       (t + 0.002, "stable", f"{sid}/event/{stable}")]  # fmt: skip
            t += 0.002
            for _ in range(rng.randint(0, 3)):
                changed(sid, leads, stream, "interrupted", "signal_interrupted", "interrupted")
                if rng.random() < 0.8:
                    changed(sid, leads, stream, "live", "signal_restored", "restored")
        t += rng.uniform(0.05, 3.0) * interval
        flip = t
        steps.append((t, "status", sid, "ended"))
        t += lag()
        if rng.random() < 0.6:  # stopped by its user; else it timed out without a signal
            steps.append((t, "event", sid, f"stop {next(ids)}"))
            stream.append((t, "stopped", f"{sid}/status/stopped"))
            t += 0.001
        steps.append((t, "event", sid, f"ended {next(ids)}"))
        stream.append((t, "ended", f"{sid}/status/ended"))
        leads.append((flip, t))
        for _ in range(rng.randint(0, 3)):  # actions the SDK does not know, written at quiet moments
            at = rng.uniform(opens[sid] + 0.01, t - 0.01)
            if any(a - 0.01 <= at <= b + 0.01 for a, b in leads) or any(abs(at - x[0]) < 0.01 for x in stream):
                continue
            event = next(ids)
            steps.append((at, "event", sid, f"transcoder_rebalanced {event}"))
            stream.append((at, "unknown", f"{sid}/event/{event}"))
        expected[sid] = [(kind, ident) for _, kind, ident in sorted(stream)]
        t += rng.uniform(0.0, 2.0) * interval
    for n in range(rng.randint(0, 6)):  # another channel's session, busy: only the app-wide feed shows it
        at = rng.uniform(0.0, t)
        steps.append((at, "open", f"noise-{n}", "ch-other"))
        steps.append((at, "event", f"noise-{n}", f"stable {next(ids)}"))
    steps.sort(key=lambda s: s[0])
    return History(steps, channel, watched, expected, opens, t)


class SimServer:
    """The history as a server holds it at the virtual now, answering the reads a watch makes."""

    def __init__(
        self,
        history: History,
        clock: VirtualClock,
        *,
        fault_rate: float,
        rng: random.Random,
        app_sessions: bool = True,
        capped: bool = False,
    ) -> None:
        self.history = history
        self.app_sessions = app_sessions  # False: the app-wide sessions listing is refused (400)
        self.capped = capped  # True: pages of at most 3 items, and a total that counts only the page
        self.clock = clock
        self.fault_rate = fault_rate
        self.rng = rng
        self.sessions: dict[str, SimSession] = {}
        self.applied = 0
        self.requests = 0
        self.channels = _Channels(self)
        self.events = _Events(self)

    @property
    def sessions_api(self) -> _Sessions:
        return _Sessions(self)

    def catch_up(self) -> None:
        steps = self.history.steps
        now = self.clock.t
        while self.applied < len(steps) and steps[self.applied][0] <= now:
            at, what, sid, value = steps[self.applied]
            self.applied += 1
            stepped = self.history.back_at is not None and at >= self.history.back_at
            stamp = START + timedelta(seconds=at - (self.history.back_by if stepped else 0.0))
            if what == "open":
                self.sessions[sid] = SimSession(sid, value, stamp, updated_at=stamp)
                continue
            session = self.sessions[sid]
            session.updated_at = max(session.updated_at or stamp, stamp)
            if what == "status":
                session.status = value
            else:
                action, event_id = value.split()
                session.events.append(Event(event_id, action, stamp, sid, updated_at=stamp))
                if action == "start":
                    session.started_at = stamp

    def read(self) -> None:
        """Bring the history up to now; fail the read now and then, as a struggling server does."""
        self.requests += 1
        self.catch_up()
        if self.rng.random() < self.fault_rate:
            if self.rng.random() < 0.5:
                raise ServerError("Service Unavailable", status_code=503)
            raise APIConnectionError("connection dropped")

    def session(self, session_id: str) -> SimSession:
        found = self.sessions.get(session_id)
        if found is None:
            raise NotFoundError(f"Session {session_id} not found", status_code=404)
        return found


def _page(items: list[Any], page: int, per_page: int, capped: bool = False) -> Page[Any]:
    per_page = min(per_page, 3) if capped else per_page
    start = (page - 1) * per_page
    data = items[start : start + per_page]
    return Page(data=data, total=len(data) if capped else len(items), page=page, per_page=per_page)


def _newest_first(events: list[Event]) -> list[Event]:
    return sorted(events, key=lambda e: (e.updated_at or e.created_at, e.id), reverse=True)


class _Channels:
    def __init__(self, server: SimServer) -> None:
        self.server = server

    async def get(self, channel_id: str) -> Channel:
        self.server.read()
        return Channel(id=channel_id, name=channel_id, input=ChannelInput())


class _Sessions:
    def __init__(self, server: SimServer) -> None:
        self.server = server

    async def list(self, channel_id: str, *, page: int = 1, per_page: int = 100) -> Page[Session]:
        self.server.read()
        return _page(self._rows(channel_id), page, per_page, self.server.capped)

    async def list_app(self, *, page: int = 1, per_page: int = 100) -> Page[Session]:
        self.server.read()
        if not self.server.app_sessions:
            raise BadRequestError("q is required", status_code=400)
        return _page(self._rows(None), page, per_page, self.server.capped)

    def _rows(self, channel_id: str | None) -> list[Session]:
        rows = [s for s in self.server.sessions.values() if channel_id is None or s.channel_id == channel_id]
        rows.sort(key=lambda s: (s.updated_at, s.id), reverse=True)
        return [
            Session(id=s.id, status=s.status, channel_id=s.channel_id, created_at=s.created_at,
                    updated_at=s.updated_at, started_at=s.started_at)
            for s in rows
        ]  # fmt: skip

    async def status(self, session_id: str) -> SessionStatus:
        self.server.read()
        return SessionStatus(status=self.server.session(session_id).status)


class _Events:
    def __init__(self, server: SimServer) -> None:
        self.server = server

    async def list(self, session_id: str, *, page: int = 1, per_page: int = 100) -> Page[Event]:
        self.server.read()
        return _page(_newest_first(self.server.session(session_id).events), page, per_page, self.server.capped)

    async def list_app(self, *, page: int = 1, per_page: int = 100) -> Page[Event]:
        self.server.read()
        everything = [e for s in self.server.sessions.values() for e in s.events]
        return _page(_newest_first(everything), page, per_page, self.server.capped)


class SimClient:
    """The server, as the watch layer's client protocol sees it."""

    def __init__(self, server: SimServer) -> None:
        self.channels = server.channels
        self.sessions = server.sessions_api
        self.events = server.events


async def run(
    history: History,
    *,
    poll: str,
    through_channel: bool,
    fault_rate: float,
    seed: int,
    interval: float = 1.0,
    app_sessions: bool = True,
    capped: bool = False,
) -> dict[str, list[Transition]]:
    """Watch the history's channel (or its sessions, each added when it opens) until every one has ended."""
    rng = random.Random(seed)
    random.seed(seed)  # the engine's jitter and stagger
    clock = VirtualClock()
    server = SimServer(history, clock, fault_rate=fault_rate, rng=rng, app_sessions=app_sessions, capped=capped)
    engine = Engine(SimClient(server), interval=interval, poll=poll, clock=clock, stay_open=True)  # type: ignore[arg-type]
    if through_channel:
        engine.add_channel(history.channel_id)
    pending_adds = [] if through_channel else sorted((at, sid) for sid, at in history.opens.items())
    got: dict[str, list[Transition]] = {sid: [] for sid in history.watched}
    ended: set[str] = set()

    async def consume() -> None:
        while len(ended) < len(history.watched):
            t = await engine.next()
            got.setdefault(t.session_id, []).append(t)
            if t.kind == "ended":
                ended.add(t.session_id)

    consumer = asyncio.create_task(consume())
    try:
        for _ in range(100_000):
            await _settle(engine, consumer)
            if consumer.done():
                break
            # A watcher is told of a session some time after it opens.
            if pending_adds and pending_adds[0][0] <= clock.t:
                engine.add_session(pending_adds.pop(0)[1])
                continue
            times = [t for t in (clock.next_timer(), pending_adds[0][0] + 0.01 if pending_adds else None) if t]
            if not times:
                raise AssertionError(f"nothing left to wait for at t={clock.t:.3f}: {ended} of {history.watched}")
            clock.advance(min(times))
        else:
            raise AssertionError("the run did not finish")
        consumer.result()
    finally:
        consumer.cancel()
        await engine.aclose()
    return got


async def _settle(engine: Engine, consumer: asyncio.Task[None]) -> None:
    """Run the loop until the engine waits on the clock (or the consumer is done)."""
    for _ in range(10_000):
        await asyncio.sleep(0)
        if consumer.done() or (engine._waiter is not None and not engine._reads):
            return
    raise AssertionError("the engine never came to rest")
