"""Watcher fidelity against the emulator: every listed event once, Live when on air, awkward server data kept."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import anyio
import pytest

from sigma_async import Ended, Live, Restored, RetryPolicy, SigmaClient, Transition, Unknown, WatchError
from sigma_async.testing import Emulator, Fault

FAST = 0.02
QUICK_RETRY = RetryPolicy(max_retries=2, initial_delay=0.001, max_delay=0.005)


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(manual_clock=True, seed=5) as emulator:
        yield emulator


@pytest.fixture
async def client(emu: Emulator) -> AsyncIterator[SigmaClient]:
    async with emu.client(retry=QUICK_RETRY) as c:
        yield c


async def started(emu: Emulator, name: str = "ch") -> tuple[str, str]:
    channel = emu.create_channel(name)
    return channel.id, emu.start_channel(channel.id).id


def end(emu: Emulator, channel_id: str) -> None:
    emu.stop_channel(channel_id)


async def collect(stream: AsyncIterator[Transition], timeout: float = 20) -> list[Transition]:
    with anyio.fail_after(timeout):
        return [t async for t in stream]


# -- Live in the normal lifecycle -----------------------------------------------------------------------------


async def test_wait_for_live_returns_when_a_publisher_connects(emu: Emulator, client: SigmaClient) -> None:
    channel_id, sid = await started(emu)
    waiter = asyncio.create_task(client.wait_for(sid, "live", timeout=10, interval=FAST))
    await emu.wait_for(lambda: emu.journal.count("GET /events") >= 1)
    emu.connect_publisher(channel_id)
    live = await waiter
    assert isinstance(live, Live) and live.session_id == sid and live.source == "status"


async def test_the_readme_match_prints_on_air_in_the_emulators_lifecycle(emu: Emulator, client: SigmaClient) -> None:
    channel_id, sid = await started(emu)
    emu.connect_publisher(channel_id)
    emu.interrupt_signal(channel_id)
    emu.restore_signal(channel_id)
    end(emu, channel_id)
    on_air = []
    async for t in client.watch_session(sid, interval=FAST):
        match t:
            case Live() | Restored():
                on_air.append(t.kind)
    assert on_air == ["live", "restored"]


async def test_the_full_lifecycle_gives_each_dimension_in_order(emu: Emulator, client: SigmaClient) -> None:
    channel_id, sid = await started(emu)
    emu.connect_publisher(channel_id)
    emu.interrupt_signal(channel_id)
    emu.restore_signal(channel_id)
    end(emu, channel_id)
    got = await collect(client.watch_session(sid, interval=FAST))
    assert [t.kind for t in got] == [
        "initializing", "started", "live", "stable", "interrupted", "restored", "stopped", "ended",
    ]  # fmt: skip
    assert len({t.id for t in got}) == len(got)


# -- events that were lost or blocked a session -----------------------------------------------------------------


async def test_an_event_written_late_with_an_old_created_at_is_yielded(emu: Emulator, client: SigmaClient) -> None:
    channel_id, sid = await started(emu)
    emu.connect_publisher(channel_id)
    seen: list[Transition] = []

    async def watch() -> None:
        async for t in client.watch_session(sid, interval=FAST):
            seen.append(t)

    task = asyncio.create_task(watch())
    await emu.wait_for(lambda: any(t.kind == "stable" for t in seen))
    old = emu.sessions[sid].events[0].created_at
    late = emu.add_late_event(sid, "signal_interrupted", created_at=old)
    await emu.wait_for(lambda: any(t.event is not None and t.event.id == late.id for t in seen))
    end(emu, channel_id)
    await asyncio.wait_for(task, 10)
    assert [t.event.id for t in seen if t.event].count(late.id) == 1


async def test_hundreds_of_events_sharing_one_timestamp_across_polls_none_dropped(
    emu: Emulator, client: SigmaClient
) -> None:
    channel_id, sid = await started(emu)
    stamp = emu.clock.now() + timedelta(seconds=1)
    first = [emu.add_event(sid, "stable", at=stamp).id for _ in range(200)]
    seen: list[Transition] = []

    async def watch() -> None:
        async for t in client.watch_session(sid, interval=FAST):
            seen.append(t)

    task = asyncio.create_task(watch())
    await emu.wait_for(lambda: sum(1 for t in seen if t.kind == "stable") == 200)
    later = [emu.add_event(sid, "stable", at=stamp).id for _ in range(100)]
    await emu.wait_for(lambda: sum(1 for t in seen if t.kind == "stable") == 300)
    end(emu, channel_id)
    await asyncio.wait_for(task, 10)
    assert sorted(t.event.id for t in seen if t.kind == "stable" and t.event) == sorted(first + later)


async def test_a_server_that_caps_per_page_is_read_to_the_end() -> None:
    async with Emulator(manual_clock=True, seed=2, max_per_page=50) as emu, emu.client() as client:
        channel_id, sid = await started(emu)
        written = [emu.add_event(sid, "stable").id for _ in range(119)]
        listed = [e.id async for e in client.events.iter(sid)]
        assert len(listed) == 120 and set(written) <= set(listed)
        page = await client.events.list(sid, per_page=100)
        assert (page.per_page, page.total, len(page.data)) == (50, 120, 50)
        end(emu, channel_id)
        got = await collect(client.watch_session(sid, interval=FAST))
        assert sum(1 for t in got if t.kind == "stable") == 119


async def test_edited_events_cost_one_read_and_the_watch_still_ends(emu: Emulator, client: SigmaClient) -> None:
    channel_id, sid = await started(emu)
    emu.connect_publisher(channel_id)
    for _ in range(3000):
        emu.add_event(sid, "stable")
    seen: list[Transition] = []

    async def watch() -> None:
        async for t in client.watch_session(sid, interval=FAST):
            seen.append(t)

    task = asyncio.create_task(watch())
    await emu.wait_for(lambda: len(seen) >= 3004, timeout=20)
    for event in list(emu.sessions[sid].events):
        emu.edit_event(sid, event.id, message="edited")
    reads_before = emu.journal.count("GET /events")
    await emu.wait_for(lambda: emu.journal.count("GET /events") >= reads_before + 10, timeout=20)
    # One read of the 3,000 edited events (about 30 pages of 100), then small reads of nothing new.
    polls = emu.journal.count("GET /events") - reads_before
    assert polls < 60
    end(emu, channel_id)
    await asyncio.wait_for(task, 20)
    assert isinstance(seen[-1], Ended)
    assert len({t.id for t in seen}) == len(seen) == 3004 + 2  # nothing yielded again: + stop, ended


@pytest.mark.parametrize(
    ("wire", "kind"),
    [
        ({"created_at": None}, "stable"),  # updatedAt stands in
        ({"created_at": "2026-11-26T10:00:00", "updated_at": "2026-11-26T10:00:00"}, "stable"),  # naive: UTC
        ({"action": None}, "unknown"),
    ],
)
async def test_one_bad_event_never_blocks_the_session(
    emu: Emulator, client: SigmaClient, wire: dict[str, Any], kind: str
) -> None:
    channel_id, sid = await started(emu)
    emu.connect_publisher(channel_id)
    bad = emu.add_malformed_event(sid, "stable", **wire)
    emu.add_event(sid, "signal_interrupted")
    end(emu, channel_id)
    got = await collect(client.watch_session(sid, interval=FAST))
    assert isinstance(got[-1], Ended)
    assert [t.kind for t in got if t.event is not None and t.event.id == bad.id] == [kind]
    assert "interrupted" in [t.kind for t in got]
    if kind == "unknown":
        assert isinstance(got[[t.event.id if t.event else None for t in got].index(bad.id)], Unknown)


async def test_an_event_with_no_time_at_all_is_skipped_with_one_warning(
    emu: Emulator, client: SigmaClient, caplog: pytest.LogCaptureFixture
) -> None:
    channel_id, sid = await started(emu)
    emu.add_malformed_event(sid, "stable", created_at=None, updated_at=None)
    caplog.set_level(logging.WARNING, logger="sigma_async")
    seen: list[Transition] = []

    async def watch() -> None:
        async for t in client.watch_session(sid, interval=FAST):
            seen.append(t)

    task = asyncio.create_task(watch())
    await emu.wait_for(lambda: emu.journal.count("GET /events") >= 5)
    end(emu, channel_id)
    await asyncio.wait_for(task, 10)
    assert isinstance(seen[-1], Ended)
    assert len([r for r in caplog.records if "skipped an event" in r.getMessage()]) == 1


async def test_ended_carries_the_ended_event_written_after_the_status(emu: Emulator, client: SigmaClient) -> None:
    channel_id, sid = await started(emu)
    emu.connect_publisher(channel_id)
    seen: list[Transition] = []

    async def watch() -> None:
        async for t in client.watch_session(sid, interval=0.3, poll="full"):
            seen.append(t)

    task = asyncio.create_task(watch())
    await emu.wait_for(lambda: any(t.kind == "stable" for t in seen))
    emu.set_status(sid, "ended")
    reads = emu.journal.count("GET /sessions/{id}/status")
    await emu.wait_for(lambda: emu.journal.count("GET /sessions/{id}/status") > reads)  # the terminal status seen
    ended = emu.add_event(sid, "ended")  # a moment later
    await asyncio.wait_for(task, 10)
    assert isinstance(seen[-1], Ended) and seen[-1].event is not None and seen[-1].event.id == ended.id


# -- monitors ---------------------------------------------------------------------------------------------------


async def test_a_session_watched_directly_and_through_its_channel_is_reported_once(
    emu: Emulator, client: SigmaClient
) -> None:
    channel_id, sid = await started(emu)
    emu.connect_publisher(channel_id)
    got: list[Transition] = []
    async with client.monitor(session_ids=[sid], channel_ids=[channel_id], interval=FAST) as monitor:
        async for t in monitor:
            got.append(t)
            if t.kind == "stable":
                end(emu, channel_id)
            if t.is_terminal:
                break
    assert len({t.id for t in got}) == len(got)
    assert [t.kind for t in got].count("live") == 1


async def test_a_bad_since_fails_at_add_session_and_not_inside_the_monitor(
    emu: Emulator, client: SigmaClient
) -> None:
    _, sid = await started(emu)
    async with client.monitor(session_ids=[], interval=FAST, stay_open=True) as monitor:
        with pytest.raises(ValueError, match="not a watch cursor"):
            monitor.add_session(sid, since="garbage")
        assert monitor.watching == frozenset()


async def test_a_malformed_session_id_from_the_server_ends_only_that_watch(
    emu: Emulator, client: SigmaClient
) -> None:
    bad_channel = emu.create_channel("bad")
    emu.start_channel(bad_channel.id)
    # The server lists a session whose id is not a plain path segment.
    listed = emu.channels[bad_channel.id]
    bad = emu.sessions.pop(listed.session_ids[0])
    bad.id = listed.session_ids[0] = "sess-é"
    emu.sessions[bad.id] = bad
    channel_id, sid = await started(emu, "good")
    emu.connect_publisher(channel_id)
    errors: list[tuple[str, BaseException]] = []
    got: list[Transition] = []
    async with client.monitor(
        session_ids=[sid], channel_ids=[bad_channel.id], interval=FAST, poll="full",
        on_error=lambda ident, exc: errors.append((ident, exc)),
    ) as monitor:  # fmt: skip
        async for t in monitor:
            got.append(t)
            if t.kind == "stable":
                end(emu, channel_id)
    assert isinstance(got[-1], Ended) and got[-1].session_id == sid
    assert [(ident, type(exc)) for ident, exc in errors] == [(bad_channel.id, WatchError)]


# -- what a watch says when it gives up -------------------------------------------------------------------------


async def test_max_silence_names_what_the_server_kept_answering(emu: Emulator) -> None:
    _, sid = await started(emu)
    emu.faults.add("GET /events", Fault(status=503), times="always")
    # Retries slower than max_silence: the poll is cut short inside the client's own retries.
    async with emu.client(retry=RetryPolicy(max_retries=5, initial_delay=0.2, max_delay=0.2)) as client:
        with pytest.raises(WatchError, match=r"HTTP 503") as caught:
            async for _ in client.watch_session(sid, interval=FAST, max_silence=0.3):
                pass
    assert "no answer" not in str(caught.value)


async def test_every_answer_is_reported_by_route_without_ids(emu: Emulator, client: SigmaClient) -> None:
    channel_id, sid = await started(emu)
    seen: list[tuple[str, int]] = []
    client.on_response = lambda route, status: seen.append((route, status))
    emu.faults.add("GET /sessions/{id}/status", Fault(status=500), times=1)
    await client.sessions.status(sid)
    await client.channels.get(channel_id)
    await client.events.list(sid)
    await client.events.list_app()
    assert seen == [
        ("sessions.status", 500), ("sessions.status", 200), ("channels.get", 200), ("events.list", 200),
        ("events.list_app", 200),
    ]  # fmt: skip
