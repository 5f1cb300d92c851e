"""Poll modes against the emulator: what each costs (from the emulator's journal) and that each keeps its promises."""

from __future__ import annotations

import asyncio
import logging
import random
import statistics
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from sigma_async import Ended, Transition, WatchError
from sigma_async.testing import Emulator
from sigma_async.watch import Monitor

INTERVAL = 0.2
EVENT_ROUTES = ("GET /events", "GET /sessions/{id}/status", "GET /sessions", "GET /channels/{id}")


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(manual_clock=True, seed=11) as emulator:
        yield emulator


async def live_sessions(emu: Emulator, n: int) -> list[str]:
    ids = []
    for i in range(n):
        channel = emu.create_channel(f"m{i}")
        emu.start_channel(channel.id)
        ids.append(emu.connect_publisher(channel.id).id)
    return ids


def requests(emu: Emulator) -> int:
    return sum(emu.journal.count(route) for route in EVENT_ROUTES)


class Run:
    """A monitor in a task; what it yields and when, by event id."""

    def __init__(self, monitor: Monitor) -> None:
        self.items: list[Transition] = []
        self.arrived: dict[str, float] = {}
        self.task = asyncio.create_task(self._consume(monitor))

    async def _consume(self, monitor: Monitor) -> None:
        async for t in monitor:
            self.items.append(t)
            if t.event is not None:
                self.arrived[t.event.id] = time.monotonic()


async def steady_state(
    emu: Emulator, run: Run, sids: list[str], *, intervals: int, changing: float
) -> dict[str, float]:
    """Write events to ``changing`` of the sessions per interval for ``intervals`` intervals; when each was written."""
    written: dict[str, float] = {}
    rng = random.Random(4)
    flip = {sid: True for sid in sids}
    for _ in range(intervals):
        for sid in rng.sample(sids, max(1, int(len(sids) * changing))):
            action = "signal_interrupted" if flip[sid] else "signal_restored"
            flip[sid] = not flip[sid]
            written[emu.add_event(sid, action).id] = time.monotonic()
        await asyncio.sleep(INTERVAL)  # the load: events arrive at this pace, in real time
    await emu.wait_for(lambda: set(written) <= set(run.arrived), timeout=20)
    return written


async def drain(monitor: Monitor) -> None:
    async with monitor:
        async for _ in monitor:
            pass


def lags(written: dict[str, float], run: Run) -> list[float]:
    return [run.arrived[eid] - at for eid, at in written.items()]


async def first_reads_done(emu: Emulator, run: Run, sids: list[str]) -> None:
    await emu.wait_for(lambda: {t.session_id for t in run.items if t.kind == "stable"} >= set(sids), timeout=20)


@pytest.mark.parametrize(("poll", "ceiling"), [("lean", 1.1), ("full", 2.05), ("feed", 0.1)])
async def test_each_mode_costs_what_it_says_and_delivers_every_event_in_time(
    emu: Emulator, poll: str, ceiling: float
) -> None:
    sids = await live_sessions(emu, 60)
    async with (
        emu.client(max_connections=20) as client,
        client.monitor(session_ids=sids, interval=INTERVAL, poll=poll, stay_open=True) as monitor,
    ):
        run = Run(monitor)
        await first_reads_done(emu, run, sids)
        before, started = requests(emu), time.monotonic()
        written = await steady_state(emu, run, sids, intervals=15, changing=0.05)
        spent = requests(emu) - before
        elapsed = time.monotonic() - started
        run.task.cancel()
    per_session_interval = spent / len(sids) / (elapsed / INTERVAL)
    assert per_session_interval <= ceiling, per_session_interval
    # Saving requests by falling behind would fail here: every event within about one interval.
    assert statistics.quantiles(lags(written, run), n=20)[-1] <= 1.5 * INTERVAL + 0.15
    ids = [t.id for t in run.items]
    assert len(ids) == len(set(ids))


async def test_feed_is_probed_and_auto_falls_back_to_lean_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    async with Emulator(manual_clock=True, seed=3, app_wide_listings=False) as emu, emu.client() as client:
        sids = await live_sessions(emu, 3)
        with pytest.raises(WatchError, match="app-wide event listings"):
            await drain(client.monitor(session_ids=sids, interval=INTERVAL, poll="feed"))
        caplog.set_level(logging.WARNING, logger="sigma_async")
        for sid in sids:
            emu.add_event(sid, "ended")
        got = [t async for t in client.monitor(session_ids=sids, interval=0.02, poll="auto")]
    assert sum(isinstance(t, Ended) for t in got) == 3
    assert len([r for r in caplog.records if "poll='lean'" in r.getMessage()]) == 1


async def test_a_fed_session_is_resynced_on_its_own(emu: Emulator) -> None:
    sids = await live_sessions(emu, 2)
    async with emu.client() as client:
        monitor = client.monitor(session_ids=sids, interval=0.05, poll="feed", resync=0.3)
        run = Run(monitor)
        await first_reads_done(emu, run, sids)
        emu.set_status(sids[0], "ended")  # no event says so: only a session's own read can see it
        await emu.wait_for(lambda: any(t.is_terminal and t.session_id == sids[0] for t in run.items), timeout=5)
        await monitor.aclose()


async def test_feed_delivers_late_edited_and_shared_timestamp_events_once(emu: Emulator) -> None:
    sids = await live_sessions(emu, 3)
    async with emu.client() as client, client.monitor(session_ids=sids, interval=0.05, poll="feed") as monitor:
        run = Run(monitor)
        await first_reads_done(emu, run, sids)
        old = emu.sessions[sids[0]].events[0]
        late = emu.add_late_event(sids[0], "signal_interrupted", created_at=old.created_at)
        emu.edit_event(sids[1], emu.sessions[sids[1]].events[-1].id, message="edited")
        stamp = emu.clock.now() + timedelta(seconds=5)  # ahead of everything written so far
        burst = [emu.add_event(sids[2], "stable", at=stamp).id for _ in range(150)]
        await emu.wait_for(lambda: late.id in run.arrived and set(burst) <= set(run.arrived), timeout=10)
        for sid in sids:
            emu.add_event(sid, "ended")
            emu.set_status(sid, "ended")
        await asyncio.wait_for(run.task, 10)
    ids = [t.id for t in run.items]
    assert len(ids) == len(set(ids))
    assert sum(isinstance(t, Ended) for t in run.items) == 3


async def test_lean_reads_the_status_when_an_event_announces_a_change(emu: Emulator) -> None:
    channel = emu.create_channel("lean")
    sid = emu.start_channel(channel.id).id
    async with emu.client() as client:
        got: list[str] = []

        async def watch() -> None:
            async for t in client.watch_session(sid, interval=0.05, status_every=1000):
                got.append(t.kind)

        task = asyncio.create_task(watch())
        await emu.wait_for(lambda: got == ["initializing"])
        statuses = emu.journal.count("GET /sessions/{id}/status")
        emu.connect_publisher(channel.id)  # a start event: the status is read in that same poll
        await emu.wait_for(lambda: "live" in got)
        assert emu.journal.count("GET /sessions/{id}/status") == statuses + 1
        emu.stop_channel(channel.id)
        await asyncio.wait_for(task, 5)
    assert got == ["initializing", "started", "live", "stable", "stopped", "ended"]


async def test_a_lean_channel_costs_one_request_per_interval_and_sees_a_session_between_polls(emu: Emulator) -> None:
    channel = emu.create_channel("between")
    async with emu.client() as client:
        got: list[Transition] = []

        async def watch() -> None:
            async for t in client.watch_channel(channel.id, interval=INTERVAL):
                got.append(t)

        task = asyncio.create_task(watch())
        await emu.wait_for(lambda: emu.journal.count("GET /sessions") >= 3)
        before, started = requests(emu), time.monotonic()
        await emu.wait_for(lambda: emu.journal.count("GET /sessions") >= 13, timeout=10)
        polls = (time.monotonic() - started) / INTERVAL
        assert (requests(emu) - before) / polls <= 1.2
        # A session that starts and ends between two polls of the channel.
        count = emu.journal.count("GET /sessions")
        await emu.wait_for(lambda: emu.journal.count("GET /sessions") > count)
        brief = emu.start_channel(channel.id).id
        emu.stop_channel(channel.id)
        nxt = emu.start_channel(channel.id).id
        await emu.wait_for(lambda: any(t.session_id == nxt for t in got), timeout=10)
        task.cancel()
    kinds_of_brief = [t.kind for t in got if t.session_id == brief]
    assert kinds_of_brief[0] == "initializing" and kinds_of_brief[-1] == "ended"
    assert max(i for i, t in enumerate(got) if t.session_id == brief) < min(
        i for i, t in enumerate(got) if t.session_id == nxt
    )


async def test_watch_session_refuses_feed_at_the_call(emu: Emulator) -> None:
    async with emu.client() as client:
        with pytest.raises(ValueError, match="monitor"):
            client.watch_session("s-1", poll="feed")
        with pytest.raises(ValueError, match="poll must be one of"):
            client.watch_session("s-1", poll="sometimes")




async def test_a_feed_read_slower_than_the_interval_reads_again_at_once() -> None:
    from sigma_async.models import Page, SessionStatus

    reads = 0

    class Events:
        """A server whose app-wide listing takes three intervals to answer."""

        async def list_app(self, *, page: int = 1, per_page: int = 100) -> Page[Any]:
            nonlocal reads
            reads += 1
            await asyncio.sleep(0.03)
            return Page(data=[], per_page=per_page)

        async def list(self, session_id: str, *, page: int = 1, per_page: int = 100) -> Page[Any]:
            return Page(data=[], per_page=per_page)

    class Sessions:
        async def status(self, session_id: str) -> SessionStatus:
            return SessionStatus(status="live")

        async def list_app(self, *, page: int = 1, per_page: int = 100) -> Page[Any]:
            return Page(data=[], total=0)

    class Client:
        events = Events()
        sessions = Sessions()

    monitor = Monitor(Client(), session_ids=["s-1"], interval=0.01, poll="feed", stay_open=True)  # type: ignore[arg-type]

    async def consume() -> None:
        async for _ in monitor:
            pass

    task = asyncio.create_task(consume())
    try:
        started = time.monotonic()
        while reads < 4:
            assert not task.done(), task.exception()
            assert time.monotonic() - started < 5, "the feed stopped reading"
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await monitor.aclose()
