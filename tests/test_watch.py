"""watch_session, watch_channel, wait_for and monitor against the emulator over loopback."""

from __future__ import annotations

import asyncio
import gc
import time
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from _recorder import Reply, recording_server

import sigma_async
from sigma_async import (
    AuthenticationError,
    Ended,
    Interrupted,
    Live,
    NotFoundError,
    RetryPolicy,
    SigmaClient,
    Transition,
    Unknown,
    WatchError,
)
from sigma_async.testing import Emulator, Fault

FAST = 0.02  # poll interval in these tests: the emulator answers in well under a millisecond
QUICK_RETRY = RetryPolicy(max_retries=3, initial_delay=0.001, max_delay=0.005)


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(manual_clock=True, seed=1) as emulator:
        yield emulator


@pytest.fixture
async def client(emu: Emulator) -> AsyncIterator[SigmaClient]:
    async with emu.client(retry=QUICK_RETRY) as c:
        yield c


async def new_session(emu: Emulator, name: str = "ch") -> tuple[str, str]:
    channel = emu.create_channel(name)
    session = emu.start_channel(channel.id)
    return channel.id, session.id


def shape(transitions: list[Transition]) -> list[tuple[str, str, str | None]]:
    return [(t.kind, t.source, t.event.id if t.event else None) for t in transitions]


class Collector:
    """Runs a watch in a task and keeps what it yields, so a test can drive the server between transitions."""

    def __init__(self, stream: AsyncIterator[Transition]) -> None:
        self.items: list[Transition] = []
        self.task = asyncio.create_task(self._run(stream))

    async def _run(self, stream: AsyncIterator[Transition]) -> None:
        async for t in stream:
            self.items.append(t)

    async def reach(self, emu: Emulator, count: int) -> None:
        await emu.wait_for(lambda: len(self.items) >= count or self.task.done(), timeout=10)
        assert len(self.items) >= count, self.items

    async def finish(self) -> list[Transition]:
        with anyio.fail_after(10):
            await self.task
        return self.items


async def scripted_run(emu: Emulator, client: SigmaClient) -> list[Transition]:
    """live -> stable -> interrupted -> (an action the SDK does not know) -> restored -> ended, step by step."""
    _, sid = await new_session(emu)
    watch = Collector(client.watch_session(sid, interval=FAST))
    await watch.reach(emu, 1)  # initializing
    emu.set_status(sid, "live")
    await watch.reach(emu, 3)  # started (being on air implies it), live
    emu.add_event(sid, "stable")
    await watch.reach(emu, 4)
    emu.set_status(sid, "interrupted")
    emu.add_event(sid, "signal_interrupted")
    await watch.reach(emu, 5)
    emu.add_event(sid, "transcoder_rebalanced")
    await watch.reach(emu, 6)
    emu.set_status(sid, "live")
    emu.add_event(sid, "signal_restored")
    await watch.reach(emu, 7)
    emu.add_event(sid, "ended", message="Kênh đã kết thúc")
    emu.set_status(sid, "ended")
    return await watch.finish()


async def test_scripted_session_yields_each_kind_in_order(emu: Emulator, client: SigmaClient) -> None:
    got = await scripted_run(emu, client)
    assert [t.kind for t in got] == [
        "initializing", "started", "live", "stable", "interrupted", "unknown", "restored", "ended",
    ]  # fmt: skip
    assert isinstance(got[2], Live) and got[2].source == "status" and got[2].event is None
    unknown = got[5]
    assert isinstance(unknown, Unknown) and unknown.raw == "transcoder_rebalanced"
    ended = got[-1]
    assert isinstance(ended, Ended) and ended.event is not None and ended.event.message == "Kênh đã kết thúc"
    assert [t.previous for t in got[1:]] == [t.kind for t in got[:-1]]
    assert all(t.cursor for t in got) and len({t.cursor for t in got}) == len(got)


async def test_a_burst_larger_than_a_page_is_yielded_whole_and_in_order(emu: Emulator, client: SigmaClient) -> None:
    _, sid = await new_session(emu)
    watch = Collector(client.watch_session(sid, interval=FAST))
    await watch.reach(emu, 1)
    burst = [emu.add_event(sid, "stable" if i % 2 else "signal_restored") for i in range(150)]
    emu.add_event(sid, "ended")
    emu.set_status(sid, "ended")
    got = await watch.finish()
    assert [t.event.id for t in got[1:-1] if t.event] == [e.id for e in burst]
    assert isinstance(got[-1], Ended)
    # Read newest first in small pages, stopping at what was seen: more than one page, but not the history again.
    assert emu.journal.count("GET /events") < 40


async def test_faults_do_not_change_what_is_yielded(emu: Emulator, client: SigmaClient) -> None:
    clean = shape(await scripted_run(emu, client))
    for route in ("GET /sessions/{id}/status", "GET /events"):
        emu.faults.add(route, Fault(status=500), probability=0.15, seed=3)
        emu.faults.add(route, Fault(drop=True), probability=0.15, seed=4)
    emu.faults.add("GET /events", Fault(status=429, retry_after=0.05), times=1)
    faulty = await scripted_run(emu, client)
    failed = [e for e in emu.journal if e.status is None or e.status >= 400]
    assert len(failed) >= 5  # the faults really fired
    assert [(k, s) for k, s, _ in shape(faulty)] == [(k, s) for k, s, _ in clean]
    assert len({e for _, _, e in shape(faulty) if e}) == len([e for _, _, e in shape(faulty) if e])


async def test_break_and_resume_from_a_cursor_repeats_and_misses_nothing(emu: Emulator, client: SigmaClient) -> None:
    _, sid = await new_session(emu)
    for action in ("start", "stable", "signal_interrupted", "signal_restored", "stable", "stop", "ended"):
        emu.add_event(sid, action)
    emu.set_status(sid, "ended")
    everything = [t async for t in client.watch_session(sid, interval=FAST)]
    first: list[Transition] = []
    async for t in client.watch_session(sid, interval=FAST):
        first.append(t)
        if len(first) == 2:
            break
    rest = [t async for t in client.watch_session(sid, interval=FAST, since=first[-1].cursor)]
    assert shape(first + rest) == shape(everything)
    # initializing, started, live (before the first signal event), five more events, ended
    assert len(everything) == 9 and isinstance(rest[-1], Ended)
    assert [t.kind for t in everything][:4] == ["initializing", "started", "live", "stable"]


async def test_cancelling_a_watch_is_prompt_and_leaves_nothing_behind(emu: Emulator) -> None:
    _, sid = await new_session(emu)
    emu.faults.add("GET /sessions/{id}/status", Fault(latency=30), times=1)  # a request hangs in flight
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        client = emu.client()
        watch = Collector(client.watch_session(sid, interval=FAST))
        await emu.wait_for(lambda: emu.journal.in_flight >= 1)
        started = time.monotonic()
        watch.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await watch.task
        assert time.monotonic() - started < 1.0
        await client.aclose()
        del watch, client
        gc.collect()
    assert not [w for w in caught if "nclosed" in str(w.message)]
    assert sdk_tasks() == []


def sdk_tasks() -> list[asyncio.Task[Any]]:
    """Live tasks running SDK code (the emulator's own tasks aside), including async-generator finalisers."""
    package = Path(sigma_async.__file__).parent
    found = []
    for task in asyncio.all_tasks():
        if task is asyncio.current_task() or task.done():
            continue
        code = getattr(task.get_coro(), "cr_code", None) or getattr(task.get_coro(), "ag_code", None)
        filename = Path(code.co_filename) if code else None
        if "athrow" in repr(task.get_coro()) or (
            filename and package in filename.parents and "testing" not in filename.parts
        ):
            found.append(task)
    return found


async def test_fatal_errors_raise_at_once(emu: Emulator, client: SigmaClient) -> None:
    with pytest.raises(NotFoundError):
        async for _ in client.watch_session("no-such-session", interval=FAST):
            pass
    _, sid = await new_session(emu)
    async with SigmaClient(
        username=emu.username, secret_key="wrong", app_id=emu.app_id, base_url=emu.url
    ) as bad:
        with pytest.raises(AuthenticationError):
            async for _ in bad.watch_session(sid, interval=FAST):
                pass
    assert emu.journal.count("GET /sessions/{id}/status") == 2  # one request each: no retries


async def test_max_silence_bounds_a_poll_that_hangs(emu: Emulator) -> None:
    _, sid = await new_session(emu)
    emu.faults.add("*", Fault(latency=30), probability=1.0)  # every answer would take 30 s
    async with emu.client(timeout=20) as client:
        started = time.monotonic()
        with pytest.raises(WatchError, match="no good answer"):
            async for _ in client.watch_session(sid, interval=FAST, max_silence=0.3):
                pass
        assert time.monotonic() - started < 1.5


async def test_max_silence_raises_watch_error_when_the_server_stays_down(emu: Emulator, client: SigmaClient) -> None:
    _, sid = await new_session(emu)
    emu.faults.add("*", Fault(status=503), probability=1.0)
    started = time.monotonic()
    with pytest.raises(WatchError, match="no good answer"):
        async for _ in client.watch_session(sid, interval=FAST, max_silence=0.3):
            pass
    assert 0.3 <= time.monotonic() - started < 2.0


async def test_bad_arguments_fail_at_the_call(client: SigmaClient) -> None:
    with pytest.raises(ValueError, match="not a valid id"):
        client.watch_session("../x")
    with pytest.raises(ValueError, match="interval"):
        client.watch_session("s", interval=0)
    with pytest.raises(ValueError, match="not a watch cursor"):
        client.watch_session("s", since="garbage!")


async def test_watch_channel_follows_the_channel_across_sessions(emu: Emulator, client: SigmaClient) -> None:
    channel = emu.create_channel("follow")
    watch = Collector(client.watch_channel(channel.id, interval=FAST))
    first = emu.start_channel(channel.id)
    await watch.reach(emu, 1)
    emu.stop_channel(channel.id)
    await emu.wait_for(lambda: any(isinstance(t, Ended) for t in watch.items), timeout=10)
    second = emu.start_channel(channel.id)
    await emu.wait_for(lambda: any(t.session_id == second.id for t in watch.items), timeout=10)
    watch.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await watch.task
    sessions = [t.session_id for t in watch.items]
    assert sessions[0] == first.id and sessions[-1] == second.id
    assert all(t.channel_id == channel.id for t in watch.items)
    assert sessions.index(second.id) > max(i for i, t in enumerate(watch.items) if isinstance(t, Ended))


async def test_wait_for_returns_the_first_transition_of_a_kind(emu: Emulator, client: SigmaClient) -> None:
    channel_id, sid = await new_session(emu)
    waiter = asyncio.create_task(client.wait_for(sid, "interrupted", timeout=10, interval=FAST))
    emu.connect_publisher(channel_id)
    emu.interrupt_signal(channel_id)
    got = await waiter
    assert isinstance(got, Interrupted) and got.session_id == sid
    emu.stop_channel(channel_id)
    with pytest.raises(WatchError, match="ended before"):
        await client.wait_for(sid, "restored", timeout=10, interval=FAST)
    with pytest.raises(ValueError, match="unknown transition kind"):
        await client.wait_for(sid, "exploded")


async def test_monitor_200_sessions_delivers_every_transition_once(emu: Emulator) -> None:
    expected: dict[str, list[str]] = {}
    for i in range(200):
        _, sid = await new_session(emu, f"m{i}")
        expected[sid] = [emu.sessions[sid].events[0].id]  # the initialize event of the start
    got: dict[str, list[str]] = {sid: [] for sid in expected}

    async def consume(monitor: Any) -> None:
        async for t in monitor:
            if t.source == "status":
                assert t.kind == "live"  # on air: the one transition of this run that no event carries
                continue
            assert t.event is not None
            got[t.session_id].append(t.event.id)

    async with (
        emu.client(retry=QUICK_RETRY, max_connections=20) as client,
        client.monitor(session_ids=list(expected), interval=0.1) as monitor,
    ):
        consumer = asyncio.create_task(consume(monitor))
        # While every session is being watched, events arrive in three rounds: each must come out once.
        for round_actions in (["start", "stable"], ["signal_interrupted", "signal_restored"], ["ended"]):
            await emu.wait_for(lambda: got == expected, timeout=20)
            for i, sid in enumerate(expected):
                if round_actions[0] == "signal_interrupted" and i % 3:
                    continue
                expected[sid] += [emu.add_event(sid, a).id for a in round_actions]
                if round_actions == ["ended"]:
                    emu.set_status(sid, "ended")
        await asyncio.wait_for(consumer, 20)
    assert got == expected


async def test_monitor_add_and_remove_while_running(emu: Emulator, client: SigmaClient) -> None:
    _, first = await new_session(emu, "a")
    _, second = await new_session(emu, "b")
    _, dropped = await new_session(emu, "c")
    seen: list[tuple[str, str]] = []
    async with client.monitor(session_ids=[first, dropped], interval=FAST) as monitor:
        async for t in monitor:
            seen.append((t.session_id, t.kind))
            if len(seen) == 2:
                monitor.remove_session(dropped)
                monitor.add_session(second)
                emu.add_event(dropped, "stable")  # no longer watched: never yielded
                for sid in (first, second):
                    emu.add_event(sid, "ended")
                    emu.set_status(sid, "ended")
    assert (first, "ended") in seen and (second, "ended") in seen
    assert (dropped, "stable") not in seen and (dropped, "ended") not in seen


async def test_monitor_error_policy(emu: Emulator, client: SigmaClient) -> None:
    _, sid = await new_session(emu)
    errors: list[tuple[str, Exception]] = []
    emu.add_event(sid, "ended")
    emu.set_status(sid, "ended")
    monitor: Any = client.monitor(
        session_ids=[sid, "missing"], interval=FAST, on_error=lambda i, e: errors.append((i, e))
    )
    kinds = [t.kind async for t in monitor]
    assert kinds[-1] == "ended" and errors and errors[0][0] == "missing"
    assert isinstance(errors[0][1], NotFoundError)
    with pytest.raises(NotFoundError):
        async for _ in client.monitor(session_ids=["missing"], interval=FAST):
            pass


async def test_removing_a_session_drops_what_it_left_in_the_buffer(emu: Emulator, client: SigmaClient) -> None:
    sids = []
    for name in ("keep", "drop"):
        _, sid = await new_session(emu, name)
        for _ in range(20):
            emu.add_event(sid, "stable")
        emu.add_event(sid, "ended")
        emu.set_status(sid, "ended")
        sids.append(sid)
    keep, drop = sids
    after_removal: list[str] = []
    async with client.monitor(session_ids=sids, interval=FAST, stagger=False) as monitor:
        first = await monitor.__anext__()
        # Both watches have read everything into the buffer (a slow consumer): then one is removed.
        await emu.wait_for(lambda: len(monitor._engine._out) >= 40)
        monitor.remove_session(drop)
        after_removal = [t.session_id async for t in monitor]
    assert drop not in after_removal
    # initializing, started and live (first seen on air), 20 stable, ended
    assert after_removal.count(keep) == 24 - (first.session_id == keep)


async def test_wait_for_and_watch_channel_leave_no_finaliser_behind(emu: Emulator, client: SigmaClient) -> None:
    channel_id, sid = await new_session(emu)
    emu.connect_publisher(channel_id)
    assert (await client.wait_for(sid, "stable", interval=FAST)).kind == "stable"
    follower = client.watch_channel(channel_id, interval=FAST)
    assert (await follower.__anext__()).session_id == sid
    await follower.aclose()
    await asyncio.sleep(0)  # one loop turn: a finaliser task would have been scheduled by now
    assert sdk_tasks() == []


async def test_a_page_shifted_by_a_whole_page_mid_poll_loses_nothing() -> None:
    """Ten events land between the reads of page 1 and page 2 of one poll: page 2 is page 1 again."""

    def ev(name: str, second: int) -> dict[str, str]:
        at = f"2024-07-22T11:00:{second:02d}.000Z"
        return {"id": name, "action": "stable", "createdAt": at, "updatedAt": at}

    old = [ev(f"e{i}", i) for i in range(5)]
    new = [ev(f"n{i:02d}", 10 + i) for i in range(1, 16)]
    newest_first = list(reversed(new))
    end = {**ev("z-end", 59), "action": "ended"}
    async with recording_server() as server, SigmaClient(
        username="u", secret_key="k", app_id="a", base_url=server.url
    ) as client:
        server.reply(
            Reply(200, {"status": "live"}), Reply(200, {"data": list(reversed(old))}),  # poll 1: the history
            Reply(200, {"status": "live"}),
            Reply(200, {"data": newest_first[:10]}),  # poll 2, page 1
            Reply(200, {"data": newest_first[:10]}),  # page 2: shifted down by ten new events
            Reply(200, {"data": newest_first[10:] + list(reversed(old))}),  # page 3: the rest, then the old
            Reply(200, {"status": "ended"}), Reply(200, {"data": [end, newest_first[0]]}),
        )
        got = [t async for t in client.watch_session("s-1", interval=0.01)]
    assert [t.event.id for t in got if t.event] == [e["id"] for e in old + new] + ["z-end"]


async def test_breaking_out_of_a_plain_monitor_loop_stops_its_watches(emu: Emulator, client: SigmaClient) -> None:
    sids = [(await new_session(emu, f"b{i}"))[1] for i in range(3)]
    async for _ in client.monitor(session_ids=sids, interval=FAST):
        break
    gc.collect()
    await emu.wait_for(lambda: not [t for t in asyncio.all_tasks() if "sigma-async" in t.get_name()], timeout=2)
