"""The status dimension: each step once, only forwards, whatever is read first and whatever fails in between."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from sigma_async import RetryPolicy, SigmaClient
from sigma_async.testing import Emulator, Fault

from ._sim import History, Step
from ._sim import run as sim_run
from ._support import FAST, Watching

NO_RETRY = RetryPolicy(max_retries=0)
STATUS = "GET /sessions/{id}/status"


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(manual_clock=True, seed=41) as emulator:
        yield emulator


@pytest.fixture
async def client(emu: Emulator) -> AsyncIterator[SigmaClient]:
    async with emu.client(retry=NO_RETRY) as c:
        yield c


def status_reads(emu: Emulator) -> int:
    return emu.journal.count(STATUS)


def in_flight(emu: Emulator, route: str) -> bool:
    return any(e.status is None and e.finished is None for e in emu.journal.entries(route))


@pytest.mark.parametrize("poll", ["full", "lean"])
async def test_a_status_shown_before_its_event_comes_once_and_never_goes_back(
    emu: Emulator, client: SigmaClient, poll: str
) -> None:
    channel = emu.create_channel("ahead")
    sid = emu.start_channel(channel.id).id
    watch = Watching(client.watch_session(sid, interval=FAST, poll=poll))
    await emu.wait_for(lambda: watch.kinds() == ["initializing"])
    emu.set_status(sid, "live")  # on air by the status; its start event is listed only later
    await emu.wait_for(lambda: "live" in watch.kinds())
    emu.add_event(sid, "start")
    emu.add_event(sid, "stable")
    await emu.wait_for(lambda: "stable" in watch.kinds())
    emu.set_status(sid, "stopped")  # the stop, too, shows in the status first
    reads = status_reads(emu)
    await emu.wait_for(lambda: status_reads(emu) >= reads + 2 or "stopped" in watch.kinds())
    emu.add_event(sid, "stop")
    emu.add_event(sid, "ended")
    emu.set_status(sid, "ended")
    assert await watch.finish() == ["initializing", "started", "live", "stable", "stopped", "ended"]


@pytest.mark.parametrize("fault", [Fault(latency=0.3), Fault(latency=0.3, status=503)], ids=["slow", "503"])
async def test_a_step_landing_between_two_reads_of_a_poll_changes_nothing(
    emu: Emulator, client: SigmaClient, fault: Fault
) -> None:
    channel = emu.create_channel("racing")
    sid = emu.start_channel(channel.id).id
    watch = Watching(client.watch_session(sid, interval=FAST))
    await emu.wait_for(lambda: watch.kinds() == ["initializing"])
    emu.faults.add(STATUS, fault, times=1)
    emu.connect_publisher(channel.id)  # start and stable: they announce a change, so the status is read
    await emu.wait_for(lambda: in_flight(emu, STATUS))
    emu.set_status(sid, "stopped")  # the next step lands while that status read is on its way
    await emu.wait_for(lambda: not in_flight(emu, STATUS))
    emu.add_event(sid, "stop")
    await emu.wait_for(lambda: "stopped" in watch.kinds())
    emu.add_event(sid, "ended")
    emu.set_status(sid, "ended")
    assert await watch.finish() == ["initializing", "started", "live", "stable", "stopped", "ended"]


async def test_a_session_live_by_its_status_alone_for_a_few_polls_gets_live_in_lean(
    emu: Emulator, client: SigmaClient
) -> None:
    channel = emu.create_channel("brief")
    sid = emu.start_channel(channel.id).id
    watch = Watching(client.watch_session(sid, interval=FAST))
    await emu.wait_for(lambda: watch.kinds() == ["initializing"])
    emu.set_status(sid, "live")  # no event says so
    polls = emu.journal.count("GET /events")
    await emu.wait_for(lambda: emu.journal.count("GET /events") >= polls + 3)  # three polls: over in well under 15
    emu.set_status(sid, "ended")
    emu.add_event(sid, "ended")
    assert await watch.finish() == ["initializing", "started", "live", "ended"]


@pytest.mark.parametrize("poll", ["lean", "full", "feed"])
async def test_ended_carries_its_event_written_most_of_an_interval_after_the_status(poll: str) -> None:
    steps: list[Step] = [
        (0.5, "open", "s-0", "ch"), (0.5, "event", "s-0", "initialize e0"), (1.0, "status", "s-0", "live"),
        (1.0, "event", "s-0", "start e1"), (1.01, "event", "s-0", "stable e2"), (3.0, "status", "s-0", "ended"),
        (3.5, "event", "s-0", "signal_interrupted e3"), (3.95, "event", "s-0", "ended e4"),
    ]  # fmt: skip
    history = History(steps, "ch", ["s-0"], {}, {"s-0": 0.5}, 4.0)
    for seed in range(20):  # each seed a different timing of the polls
        got = (await sim_run(history, poll=poll, through_channel=False, fault_rate=0.0, seed=seed))["s-0"]
        assert [t.kind for t in got] == ["initializing", "started", "live", "stable", "interrupted", "ended"], seed
        assert got[-1].event is not None and got[-1].event.id == "e4"
