"""Channel watches against the emulator: every session the listing shows, each once, claims, resume, 404."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from sigma_async import NotFoundError, SigmaClient, Transition
from sigma_async.testing import Emulator, Fault

from ._sim import History, Step
from ._sim import run as sim_run
from ._support import FAST, QUICK_RETRY, Watching


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(manual_clock=True, seed=21) as emulator:
        yield emulator


@pytest.fixture
async def client(emu: Emulator) -> AsyncIterator[SigmaClient]:
    async with emu.client(retry=QUICK_RETRY) as c:
        yield c


def listings(emu: Emulator) -> int:
    return emu.journal.count("GET /sessions")


def run_session(emu: Emulator, channel_id: str) -> str:
    """A whole session between two breaths: opened, on air, stopped."""
    sid = emu.start_channel(channel_id).id
    emu.connect_publisher(channel_id)
    emu.stop_channel(channel_id)
    return sid


FULL_COURSE = ["initializing", "started", "live", "stable", "stopped", "ended"]


async def test_a_lean_channel_past_64_sessions_reports_each_once_and_an_idle_one_repeats_nothing(
    emu: Emulator, client: SigmaClient
) -> None:
    channel = emu.create_channel("busy")
    watch = Watching(client.watch_channel(channel.id, interval=FAST))
    await emu.wait_for(lambda: listings(emu) >= 1)
    sids = []
    for n in range(300):
        sids.append(run_session(emu, channel.id))
        if n % 10 == 9:  # ten at a time between two polls
            await emu.wait_for(lambda: watch.ended(sids[-1]))
    polls = listings(emu)
    await emu.wait_for(lambda: listings(emu) >= polls + 10)  # idle: ten more polls of the channel
    await watch.stop()
    ids = [t.id for t in watch.got]
    assert len(ids) == len(set(ids)), "a finished session was taken up again"
    assert all(watch.kinds(sid) == FULL_COURSE for sid in sids)


@pytest.mark.parametrize("poll", ["lean", "full"])
async def test_every_session_that_came_and_went_between_two_polls_is_reported(
    emu: Emulator, client: SigmaClient, poll: str
) -> None:
    channel = emu.create_channel("short")
    watch = Watching(client.watch_channel(channel.id, interval=0.5, poll=poll))
    await emu.wait_for(lambda: any(e.finished for e in emu.journal.entries("GET /sessions")))  # the first look
    sids = [run_session(emu, channel.id) for _ in range(25)]  # all of them well inside one interval
    await emu.wait_for(lambda: all(watch.ended(sid) for sid in sids), timeout=10)
    await watch.stop()
    assert all(watch.kinds(sid) == FULL_COURSE for sid in sids)
    # Oldest first: each session's stream comes whole before the next one's.
    assert [t.session_id for t in watch.got if t.kind == "ended"] == sids


async def test_a_newer_session_is_not_held_back_when_the_old_ones_row_moves_above_it(
    emu: Emulator, client: SigmaClient
) -> None:
    channel = emu.create_channel("overlap")
    watch = Watching(client.watch_channel(channel.id, interval=FAST))
    await emu.wait_for(lambda: listings(emu) >= 1)
    old = run_session(emu, channel.id)
    await emu.wait_for(lambda: watch.ended(old))
    new = emu.start_channel(channel.id).id
    emu.add_event(old, "stable")  # the old session's row is updated after the new one exists: it tops the listing
    polls = listings(emu)
    await emu.wait_for(lambda: watch.kinds(new) == ["initializing"], timeout=5)
    assert listings(emu) - polls <= 3
    emu.connect_publisher(channel.id)
    await emu.wait_for(lambda: "stable" in watch.kinds(new), timeout=5)
    await watch.stop()
    assert watch.kinds(new) == ["initializing", "started", "live", "stable"]


async def test_an_event_that_does_not_move_the_row_is_read_within_status_every_intervals(
    emu: Emulator, client: SigmaClient
) -> None:
    channel = emu.create_channel("quiet")
    sid = emu.start_channel(channel.id).id
    emu.connect_publisher(channel.id)
    watch = Watching(client.watch_channel(channel.id, interval=FAST, status_every=5))
    await emu.wait_for(lambda: "stable" in watch.kinds(sid))
    polls = listings(emu)
    event = emu.add_event(sid, "signal_interrupted", bump_session=False)
    await emu.wait_for(lambda: "interrupted" in watch.kinds(sid), timeout=5)
    waited = listings(emu) - polls
    await watch.stop()
    assert [t.event.id for t in watch.got if t.kind == "interrupted" and t.event] == [event.id]
    assert waited <= 5 + 2, f"read after {waited} polls of the channel; the bound is status_every (5)"


async def test_a_channel_that_does_not_exist_raises_at_once(emu: Emulator, client: SigmaClient) -> None:
    with anyio.fail_after(5), pytest.raises(NotFoundError):
        async for _ in client.watch_channel("no-such-channel", interval=FAST):
            pass


async def test_a_deleted_channel_ends_its_session_then_raises(emu: Emulator, client: SigmaClient) -> None:
    channel = emu.create_channel("doomed")
    sid = emu.start_channel(channel.id).id
    emu.connect_publisher(channel.id)
    got: list[Transition] = []

    async def watch() -> None:
        async for t in client.watch_channel(channel.id, interval=FAST, status_every=2):
            got.append(t)
            if t.kind == "stable":
                emu.delete_channel(channel.id)

    with anyio.fail_after(10), pytest.raises(NotFoundError):
        await watch()
    assert [t.kind for t in got][-1] == "ended" and got[-1].session_id == sid


# -- claims: a session is watched while anything claims it ------------------------------------------------------


async def test_a_session_stays_watched_while_any_claim_on_it_remains(emu: Emulator, client: SigmaClient) -> None:
    channel = emu.create_channel("claimed")
    sid = emu.start_channel(channel.id).id
    emu.connect_publisher(channel.id)
    got: list[Transition] = []
    with anyio.fail_after(10):
        async with client.monitor(channel_ids=[channel.id], interval=FAST, stay_open=True) as monitor:
            async for t in monitor:
                got.append(t)
                if t.kind == "stable":
                    monitor.add_session(sid)  # a second claim, while the channel reports it
                    monitor.remove_channel(channel.id)  # the first goes: the session is still claimed
                    emu.interrupt_signal(channel.id)
                    emu.stop_channel(channel.id)
                elif t.kind == "ended":
                    break
    assert [t.kind for t in got] == ["initializing", "started", "live", "stable", "interrupted", "stopped", "ended"]
    assert monitor.watching == frozenset()


async def test_a_session_dropped_directly_goes_on_through_its_channel(emu: Emulator, client: SigmaClient) -> None:
    channel = emu.create_channel("both")
    sid = emu.start_channel(channel.id).id
    got: list[Transition] = []
    with anyio.fail_after(10):
        async with client.monitor(
            session_ids=[sid], channel_ids=[channel.id], interval=FAST, stay_open=True, stagger=False
        ) as monitor:
            async for t in monitor:
                got.append(t)
                if t.kind == "initializing":
                    await emu.wait_for(lambda: listings(emu) >= 1)  # the channel has seen it: a second claim
                    emu.connect_publisher(channel.id)
                elif t.kind == "stable":
                    monitor.remove_session(sid)
                    emu.stop_channel(channel.id)
                elif t.kind == "ended":
                    break
    kinds = [t.kind for t in got]
    assert kinds == ["initializing", "started", "live", "stable", "stopped", "ended"]
    assert len({t.id for t in got}) == len(got)


# -- resuming: a restart loses nothing ------------------------------------------------------------------------


async def test_a_channel_resumed_with_cursors_finishes_every_session_it_had_cursors_for(
    emu: Emulator, client: SigmaClient
) -> None:
    channel = emu.create_channel("restarted")
    current = emu.start_channel(channel.id).id
    emu.connect_publisher(channel.id)
    cursors: dict[str, str] = {}
    before: list[Transition] = []
    with anyio.fail_after(10):
        async with client.monitor(channel_ids=[channel.id], interval=FAST, cursors=cursors) as monitor:
            async for t in monitor:
                before.append(t)
                cursors[t.session_id] = t.cursor
                if t.kind == "stable":
                    break
    # While nothing watches: the current session is interrupted and stopped; another comes and goes; a third is on.
    emu.interrupt_signal(channel.id)
    emu.stop_channel(channel.id)
    between = run_session(emu, channel.id)
    latest = emu.start_channel(channel.id).id
    emu.connect_publisher(channel.id)
    after: list[Transition] = []
    with anyio.fail_after(10):
        async with client.monitor(channel_ids=[channel.id], interval=FAST, cursors=cursors) as monitor:
            async for t in monitor:
                after.append(t)
                if t.session_id == latest and t.kind == "stable":
                    break

    def kinds(ts: list[Transition], sid: str) -> list[str]:
        return [t.kind for t in ts if t.session_id == sid]

    assert kinds(before, current) + kinds(after, current) == [
        "initializing", "started", "live", "stable", "interrupted", "stopped", "ended",
    ]  # fmt: skip
    assert kinds(after, between) == FULL_COURSE
    assert kinds(after, latest) == ["initializing", "started", "live", "stable"]
    assert not {t.id for t in before} & {t.id for t in after}



async def test_a_first_look_that_fails_still_finds_every_session_opened_since_the_watch_began(
    emu: Emulator, client: SigmaClient
) -> None:
    channel = emu.create_channel("late-look")
    emu.faults.add("GET /sessions", Fault(status=503), times=3)  # the client's retries too: the first read fails
    watch = Watching(client.watch_channel(channel.id, interval=FAST))
    await emu.wait_for(lambda: emu.journal.count("GET /sessions") >= 3)
    sids = [run_session(emu, channel.id) for _ in range(12)]  # more than a first page, before a good look
    await emu.wait_for(lambda: all(watch.ended(sid) for sid in sids), timeout=10)
    await watch.stop()
    assert all(watch.kinds(sid) == FULL_COURSE for sid in sids)


@pytest.mark.parametrize("poll", ["lean", "full"])
async def test_a_session_opened_after_the_servers_clock_stepped_back_is_found(poll: str) -> None:
    # s-0 runs its course; the server's clock steps back 30 s; s-1 opens and runs its course, stamped earlier.
    steps: list[Step] = [
        (0.5, "open", "s-0", "ch"), (0.5, "event", "s-0", "initialize e0"), (1.0, "status", "s-0", "live"),
        (1.0, "event", "s-0", "start e1"), (1.01, "event", "s-0", "stable e2"), (3.0, "status", "s-0", "ended"),
        (3.0, "event", "s-0", "ended e3"),
        (6.0, "open", "s-1", "ch"), (6.0, "event", "s-1", "initialize e4"), (7.0, "status", "s-1", "live"),
        (7.0, "event", "s-1", "start e5"), (7.01, "event", "s-1", "stable e6"), (9.0, "status", "s-1", "ended"),
        (9.0, "event", "s-1", "ended e7"),
    ]  # fmt: skip
    course = ["initializing", "started", "live", "stable", "ended"]
    history = History(
        steps, "ch", ["s-0", "s-1"], {}, {"s-0": 0.5, "s-1": 6.0}, 9.0, back_at=5.0, back_by=30.0,
    )  # fmt: skip
    got = await sim_run(history, poll=poll, through_channel=True, fault_rate=0.0, seed=1)
    assert [t.kind for t in got["s-0"]] == course and [t.kind for t in got["s-1"]] == course


async def test_a_damaged_cursor_given_to_a_channel_watch_is_a_value_error_at_the_call(
    emu: Emulator, client: SigmaClient
) -> None:
    channel = emu.create_channel("damaged")
    sid = emu.start_channel(channel.id).id
    emu.connect_publisher(channel.id)
    with anyio.fail_after(10):
        async with client.monitor(channel_ids=[channel.id], interval=FAST) as monitor:
            cursor = [t async for t in _until(monitor, "stable")][-1].cursor
    damaged = cursor[:-3] + ("A" if cursor[-3] != "A" else "B") + cursor[-2:]
    with pytest.raises(ValueError, match="damaged"):
        client.watch_channel(channel.id, cursors={sid: damaged})
    async with client.monitor(cursors={sid: damaged}, stay_open=True) as monitor:
        with pytest.raises(ValueError, match="damaged"):
            monitor.add_channel(channel.id)


async def test_a_session_reported_directly_before_its_channel_lists_it_is_reported_once(
    emu: Emulator, client: SigmaClient
) -> None:
    channel = emu.create_channel("both-ways")
    got: list[Transition] = []
    with anyio.fail_after(10):
        async with client.monitor(
            channel_ids=[channel.id], interval=0.3, stay_open=True, stagger=False
        ) as monitor:
            await emu.wait_for(lambda: any(e.finished for e in emu.journal.entries("GET /sessions")))
            sid = emu.start_channel(channel.id).id
            monitor.add_session(sid)  # before the channel's next look
            emu.stop_channel(channel.id)  # and over before it, too
            async for t in monitor:
                got.append(t)
                if t.kind == "ended":
                    break
            looks = emu.journal.count("GET /sessions")
            await emu.wait_for(lambda: emu.journal.count("GET /sessions") >= looks + 2)  # the channel lists it
            again = [t for t in monitor._engine._out if t.session_id == sid]
    assert [t.kind for t in got] == ["initializing", "stopped", "ended"]
    assert again == [], "nothing of it again"


async def _until(monitor: Any, kind: str) -> AsyncIterator[Transition]:
    async for t in monitor:
        yield t
        if t.kind == kind:
            return
