"""What a watched session costs the process: a few small objects, counted, so the number cannot creep back up."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from datetime import timedelta

import pytest

from sigma_async.models import Event, Page, Session, SessionStatus
from sigma_async.watch._engine import Engine

from ._sim import START, VirtualClock

SESSIONS = 2_000


class Quiet:
    """Every session is live, with the three events the emulator writes when it goes on air; the app-wide
    listings show them all, so that a fed monitor starts from them."""

    def __init__(self, ids: list[str]) -> None:
        self.events = _Events(ids)
        self.sessions = _Sessions(ids)


def _history(session_id: str) -> list[Event]:
    return [
        Event(id=f"{session_id}-{n}", action=action, created_at=START + timedelta(seconds=n), session_id=session_id,
              updated_at=START + timedelta(seconds=n))
        for n, action in reversed(list(enumerate(["initialize", "start", "stable"])))
    ]  # fmt: skip


class _Events:
    def __init__(self, ids: list[str]) -> None:
        self.reads = 0  # of one session's events
        self.everything = sorted((e for sid in ids for e in _history(sid)), key=lambda e: (e.created_at, e.id))[::-1]

    async def list(self, session_id: str, *, page: int = 1, per_page: int = 100) -> Page[Event]:
        self.reads += 1
        data = _history(session_id)
        return Page(data=data[(page - 1) * per_page : page * per_page], total=len(data))

    async def list_app(self, *, page: int = 1, per_page: int = 100) -> Page[Event]:
        data = self.everything[(page - 1) * per_page : page * per_page]
        return Page(data=data, total=len(self.everything), per_page=per_page)


class _Sessions:
    def __init__(self, ids: list[str]) -> None:
        self.rows = [Session(id=sid, status="live", created_at=START, updated_at=START + timedelta(seconds=2),
                             started_at=START + timedelta(seconds=1)) for sid in ids]  # fmt: skip

    async def status(self, session_id: str) -> SessionStatus:
        return SessionStatus(status="live")

    async def list_app(self, *, page: int = 1, per_page: int = 100) -> Page[Session]:
        return Page(data=self.rows[(page - 1) * per_page : page * per_page], total=len(self.rows), per_page=per_page)


@pytest.mark.parametrize("poll", ["lean", "feed"])
async def test_a_watched_session_is_a_few_small_objects_and_no_task(poll: str) -> None:
    clock = VirtualClock()
    ids = [f"s-{n:05d}" for n in range(SESSIONS)]
    client = Quiet(ids)
    engine = Engine(client, interval=2.0, poll=poll, clock=clock, stay_open=True, max_buffer=10 * SESSIONS)  # type: ignore[arg-type]
    gc.collect()
    objects_before = len(gc.get_objects())
    tasks_before = len(asyncio.all_tasks())
    tracemalloc.start()
    try:
        for sid in ids:
            engine.add_session(sid)
        engine.start()
        # Every session polled twice: its history read, then a poll with nothing new.
        got = 0
        for _ in range(2):
            clock.advance(clock.t + 2.5)
            await settle(engine)
            while engine._out:
                await engine.next()
                got += 1
        gc.collect()
        size, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    objects = (len(gc.get_objects()) - objects_before) / SESSIONS
    tasks = len(asyncio.all_tasks()) - tasks_before
    await engine.aclose()
    # The session and its tracker: its plan and read window are structs the collector skips, the keys it took
    # in a dict of ints, its heap entry a tuple of two numbers (untracked once it survives a collection).
    assert got == 4 * SESSIONS, "each session was read: initializing, started, live, stable"
    # Lean reads each session's events each poll. Fed, they all start from the app-wide listings; the few that
    # read themselves are resyncs, spread evenly over 300 s (about 5 s of which passed here: 2,000 x 5 / 300).
    if poll == "lean":
        assert client.events.reads == 2 * SESSIONS
    else:
        assert client.events.reads < 0.05 * SESSIONS
    # Measured: 2.0 objects and about 1.7 to 1.8 KiB per session (Python 3.11).
    assert objects <= 2.5, f"{objects:.2f} GC-tracked objects per watched session"
    assert tasks <= 1, "one loop, not a task per session"
    assert size / SESSIONS < 2.25 * 1024, f"{size / SESSIONS:.0f} bytes per watched session"


async def settle(engine: Engine) -> None:
    """Run the loop until every read that is due has been made and fed back."""
    for _ in range(100_000):
        await asyncio.sleep(0)
        due = engine._heap and engine._heap[0][0] <= engine.clock.now()
        if not engine._reads and engine._waiter is not None and not due:
            return
    raise AssertionError("the loop never came to rest")


@pytest.mark.parametrize(("resync", "rate"), [(None, 400.0), (100.0, 100.0)])
async def test_a_fed_monitors_resyncs_stay_under_their_rate_unless_a_period_is_given(
    monkeypatch: pytest.MonkeyPatch, resync: float | None, rate: float
) -> None:
    # 2,000 sessions at 5 resyncs a second: the default 300 s would be 6.7 a second, so the period stretches to
    # 400 s. Given resync=100, it is 100 s whatever the rate.
    monkeypatch.setattr("sigma_async.watch._engine.RESYNC_RATE", 5.0)
    clock = VirtualClock()
    ids = [f"s-{n:05d}" for n in range(SESSIONS)]
    client = Quiet(ids)
    engine = Engine(client, interval=2.0, poll="feed", clock=clock, stay_open=True, resync=resync,  # type: ignore[arg-type]
                    max_buffer=10 * SESSIONS)  # fmt: skip
    for sid in ids:
        engine.add_session(sid)
    engine.start()
    try:
        clock.advance(clock.t + 2.5)
        await settle(engine)
        started = client.events.reads
        for _ in range(32):  # 80 s
            clock.advance(clock.t + 2.5)
            await settle(engine)
            engine._out.clear()
    finally:
        await engine.aclose()
    expected = SESSIONS * 80 / rate  # resyncs spread evenly over one period from the start
    assert abs((client.events.reads - started) - expected) < 0.15 * expected, (client.events.reads - started)
