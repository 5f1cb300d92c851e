"""Events behind the read mark: listed late, out of order, or after the server's clock stepped back, each is yielded."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

import anyio
import pytest

from sigma_async import SigmaClient
from sigma_async.models import Event, Page, SessionStatus
from sigma_async.testing import Emulator
from sigma_async.watch import Monitor

from ._support import FAST, QUICK_RETRY, Watching


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(manual_clock=True, seed=31) as emulator:
        yield emulator


@pytest.fixture
async def client(emu: Emulator) -> AsyncIterator[SigmaClient]:
    async with emu.client(retry=QUICK_RETRY) as c:
        yield c


async def on_air(emu: Emulator) -> tuple[str, str]:
    channel = emu.create_channel("late")
    sid = emu.start_channel(channel.id).id
    emu.connect_publisher(channel.id)
    return channel.id, sid


@pytest.mark.parametrize("poll", ["lean", "full"])
async def test_an_event_listed_after_a_newer_one_just_under_the_mark_is_yielded(
    emu: Emulator, client: SigmaClient, poll: str
) -> None:
    _, sid = await on_air(emu)
    watch = Watching(client.watch_session(sid, interval=FAST, poll=poll))
    newer = emu.add_event(sid, "signal_interrupted", at=emu.clock.now() + timedelta(seconds=5))
    await emu.wait_for(lambda: newer.id in watch.event_ids())
    # Written before the newest one read, visible only now: 1 ms under the mark.
    late = emu.add_event(sid, "signal_restored", at=newer.updated_at - timedelta(milliseconds=1))  # type: ignore[operator]
    await emu.wait_for(lambda: late.id in watch.event_ids(), timeout=5)
    await watch.stop()
    assert watch.event_ids().count(late.id) == 1


@pytest.mark.parametrize("poll", ["lean", "full"])
async def test_events_written_after_the_servers_clock_stepped_back_a_minute_are_yielded(
    emu: Emulator, client: SigmaClient, poll: str
) -> None:
    _, sid = await on_air(emu)
    watch = Watching(client.watch_session(sid, interval=FAST, poll=poll))
    before = emu.add_event(sid, "signal_interrupted", at=emu.clock.now() + timedelta(seconds=60))
    await emu.wait_for(lambda: before.id in watch.event_ids())
    stepped = emu.clock.now()  # the server's clock is now a minute behind the newest event it wrote
    after = [
        emu.add_event(sid, action, at=stepped + timedelta(seconds=i))
        for i, action in enumerate(["signal_restored", "signal_interrupted", "signal_restored", "stable"])
    ]
    await emu.wait_for(lambda: all(e.id in watch.event_ids() for e in after), timeout=5)
    await watch.stop()
    assert [i for i in watch.event_ids() if i in {e.id for e in after}] == [e.id for e in after]


async def test_an_app_wide_page_out_of_order_loses_nothing_below_it() -> None:
    """One feed page lists an old event above a new one: the new one, below it, is still routed."""
    sid = "s-1"
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)

    def event(n: int, seconds: float) -> Event:
        stamp = t0 + timedelta(seconds=seconds)
        return Event(id=f"e-{n}", action="stable" if n % 2 else "signal_interrupted", created_at=stamp,
                     session_id=sid, updated_at=stamp)  # fmt: skip

    history = [event(0, 0), event(1, 1), event(2, 2)]  # what the session holds when the watch starts
    written: list[Event] = list(history)
    out_of_order: list[Event] = []

    class Events:
        async def list(self, session_id: str, *, page: int = 1, per_page: int = 100) -> Page[Event]:
            ordered = sorted(written, key=lambda e: e.updated_at, reverse=True)  # type: ignore[arg-type, return-value]
            return Page(data=ordered[(page - 1) * per_page : page * per_page], total=len(ordered))

        async def list_app(self, *, page: int = 1, per_page: int = 100) -> Page[Event]:
            ordered = sorted(written, key=lambda e: e.updated_at, reverse=True)  # type: ignore[arg-type, return-value]
            if out_of_order and page == 1:
                ordered = list(out_of_order)  # once: an old event listed above a newer one
                out_of_order.clear()
            return Page(data=ordered[(page - 1) * per_page : page * per_page], total=len(ordered))

    class Sessions:
        async def status(self, session_id: str) -> SessionStatus:
            return SessionStatus(status="live")

        async def list_app(self, *, page: int = 1, per_page: int = 100) -> Page[Any]:
            return Page(data=[], total=0)

    class Client:
        events = Events()
        sessions = Sessions()

    got: list[str] = []
    history_read, new_read = asyncio.Event(), asyncio.Event()
    monitor = Monitor(Client(), session_ids=[sid], interval=FAST, poll="feed", stay_open=True)  # type: ignore[arg-type]

    async def consume() -> None:
        async for t in monitor:
            if t.event is not None:
                got.append(t.event.id)
            if len(got) >= 3:
                history_read.set()
            if {"e-3", "e-4"} <= set(got):
                new_read.set()

    task = asyncio.create_task(consume())
    try:
        with anyio.fail_after(5):
            await history_read.wait()
            new = [event(3, 3), event(4, 4)]
            written.extend(new)
            # Listed once with an event older than the mark above a new one.
            out_of_order.extend([new[1], history[1], new[0], history[2], history[0]])
            await new_read.wait()
    finally:
        task.cancel()
        await monitor.aclose()
    assert got == ["e-0", "e-1", "e-2", "e-3", "e-4"]
