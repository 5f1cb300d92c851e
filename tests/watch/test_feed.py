"""The app-wide feed: its probe, a refusal after it, and a monitor that goes on after its last watch ended."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import anyio
import msgspec
import pytest

from sigma_async import FeedRefused, RetryPolicy, SigmaClient, Transition, WatchError
from sigma_async.models import Page
from sigma_async.testing import Emulator, Fault
from sigma_async.testing._faults import JournalEntry

FAST = 0.02
NO_RETRY = RetryPolicy(max_retries=0)
FALLBACK = "polling each session on its own"


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(manual_clock=True, seed=51) as emulator:
        yield emulator


@pytest.fixture
async def client(emu: Emulator) -> AsyncIterator[SigmaClient]:
    async with emu.client(retry=NO_RETRY) as c:
        yield c


def app_wide(entry: JournalEntry) -> bool:
    return "q" not in entry.query


def on_air(emu: Emulator, name: str) -> tuple[str, str]:
    channel = emu.create_channel(name)
    emu.start_channel(channel.id)
    return channel.id, emu.connect_publisher(channel.id).id


async def test_a_session_added_on_the_last_ended_of_a_fed_monitor_gets_its_events_at_once(
    emu: Emulator, client: SigmaClient
) -> None:
    ch_a, a = on_air(emu, "a")
    ch_b, b = on_air(emu, "b")
    got: list[Transition] = []
    with anyio.fail_after(10):  # the resync (300 s) would be far too late
        async with client.monitor(session_ids=[a], interval=FAST, poll="feed") as monitor:
            async for t in monitor:
                got.append(t)
                if (t.session_id, t.kind) == (a, "stable"):
                    emu.stop_channel(ch_a)
                elif (t.session_id, t.kind) == (a, "ended"):
                    monitor.add_session(b)  # the monitor's last watch just ended: it goes on with this one
                elif (t.session_id, t.kind) == (b, "stable"):
                    emu.interrupt_signal(ch_b)  # an event that only the feed brings, before any resync
                elif (t.session_id, t.kind) == (b, "interrupted"):
                    break
    assert [t.kind for t in got if t.session_id == b][-1] == "interrupted"


async def test_a_feed_refused_after_its_probe_is_a_watch_error(emu: Emulator, client: SigmaClient) -> None:
    ch, sid = on_air(emu, "refused")

    async def watch() -> None:
        async with client.monitor(session_ids=[sid], interval=FAST, poll="feed") as monitor:
            async for t in monitor:
                if t.kind == "stable":
                    emu.faults.add("GET /events", Fault(status=400), times="always", when=app_wide)
                    emu.interrupt_signal(ch)

    with anyio.fail_after(10), pytest.raises(WatchError, match="app-wide event listings"):
        await watch()


async def test_auto_drops_to_lean_with_one_warning_when_the_feed_is_refused_later(
    emu: Emulator, client: SigmaClient, caplog: pytest.LogCaptureFixture
) -> None:
    ch, sid = on_air(emu, "fallback")
    caplog.set_level(logging.WARNING, logger="sigma_async")
    kinds: list[str] = []
    with anyio.fail_after(10):
        async with client.monitor(session_ids=[sid], interval=FAST, poll="auto") as monitor:
            async for t in monitor:
                kinds.append(t.kind)
                if t.kind == "stable":
                    emu.faults.add("GET /events", Fault(status=404), times="always", when=app_wide)
                    emu.interrupt_signal(ch)
                elif t.kind == "interrupted":
                    emu.restore_signal(ch)
                elif t.kind == "restored":
                    break
    assert kinds[-2:] == ["interrupted", "restored"]
    assert [r.getMessage() for r in caplog.records if FALLBACK in r.getMessage()] != []
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 1


@pytest.mark.parametrize(
    "fault", [Fault(status=503), Fault(status=429, retry_after=0), Fault(drop=True)], ids=["503", "429", "dropped"]
)
async def test_a_transient_failure_of_the_probe_is_retried_and_auto_keeps_the_feed(
    emu: Emulator, client: SigmaClient, caplog: pytest.LogCaptureFixture, fault: Fault
) -> None:
    ch, sid = on_air(emu, "probe")
    emu.faults.add("GET /events", fault, times=2, when=app_wide)
    caplog.set_level(logging.WARNING, logger="sigma_async")
    with anyio.fail_after(15):
        async with client.monitor(session_ids=[sid], interval=FAST, poll="auto", stagger=False) as monitor:
            async for t in monitor:
                if t.kind == "stable":
                    emu.interrupt_signal(ch)
                elif t.kind == "interrupted":
                    break
    assert not [r for r in caplog.records if FALLBACK in r.getMessage()]
    listed = [e for e in emu.journal.entries("GET /events") if e.status == 200]
    assert sum(1 for e in listed if app_wide(e)) >= 2, "the feed was read after its probe"
    # Fed: after its first read the session's own events listing is not read every interval.
    assert sum(1 for e in listed if not app_wide(e)) <= 2


async def test_a_fed_monitor_of_many_sessions_starts_from_the_app_wide_listings(
    emu: Emulator, client: SigmaClient
) -> None:
    sids = [on_air(emu, f"many-{i}")[1] for i in range(60)]
    kinds: dict[str, list[str]] = {sid: [] for sid in sids}
    with anyio.fail_after(15):
        async with client.monitor(session_ids=sids, interval=FAST, poll="feed") as monitor:
            async for t in monitor:
                kinds[t.session_id].append(t.kind)
                if all(k[-1:] == ["stable"] for k in kinds.values()):
                    break
    assert all(k == ["initializing", "started", "live", "stable"] for k in kinds.values())
    own_reads = [e for e in emu.journal.entries("GET /events") if not app_wide(e)]
    assert own_reads == [] and emu.journal.count("GET /sessions/{id}/status") == 0, "no read per session at start"
    assert emu.journal.count("GET /sessions") <= 3, "the app-wide sessions listing, a page or two"


async def test_a_fed_monitor_resumed_from_cursors_reads_what_changed_while_it_was_down(
    emu: Emulator, client: SigmaClient
) -> None:
    channels = dict(on_air(emu, f"resumed-{i}") for i in range(60))
    cursors: dict[str, str] = {}
    on_air_now: set[str] = set()
    with anyio.fail_after(15):
        async with client.monitor(session_ids=list(channels.values()), interval=FAST, poll="feed") as monitor:
            async for t in monitor:
                cursors[t.session_id] = t.cursor  # what a relay saves
                if t.kind == "stable":
                    on_air_now.add(t.session_id)
                if len(on_air_now) == len(channels):
                    break
    # While nothing watches, each session loses its signal.
    for channel_id in channels:
        emu.interrupt_signal(channel_id)
    before = len(emu.journal.entries())
    got: dict[str, list[str]] = {sid: [] for sid in channels.values()}
    with anyio.fail_after(15):
        async with client.monitor(
            session_ids=list(channels.values()), interval=FAST, poll="feed", cursors=cursors
        ) as monitor:
            async for t in monitor:
                got[t.session_id].append(t.kind)
                if all(k for k in got.values()):
                    break
    assert all(k == ["interrupted"] for k in got.values()), "each session went on from its cursor"
    requests = emu.journal.entries()[before:]
    assert not [e for e in requests if e.route == "GET /events" and not app_wide(e)], "no read per session"


@pytest.mark.parametrize(
    "answer",
    [Fault(status=403), Fault(body=b'{"code": 403, "message": "not for this app"}')],
    ids=["403", "an error sent as a 200"],
)
async def test_a_feed_refused_later_in_other_words_is_a_watch_error_too(
    emu: Emulator, client: SigmaClient, answer: Fault
) -> None:
    ch, sid = on_air(emu, "refused-otherwise")

    async def watch() -> None:
        async with client.monitor(session_ids=[sid], interval=FAST, poll="feed") as monitor:
            async for t in monitor:
                if t.kind == "stable":
                    emu.faults.add("GET /events", answer, times="always", when=app_wide)
                    emu.interrupt_signal(ch)

    with anyio.fail_after(10), pytest.raises(FeedRefused):
        await watch()


async def test_a_feed_that_turns_oldest_first_after_its_probe_is_refused(
    emu: Emulator, client: SigmaClient, caplog: pytest.LogCaptureFixture
) -> None:
    channels = dict(on_air(emu, f"turned-{i}") for i in range(3))
    caplog.set_level(logging.WARNING, logger="sigma_async")
    kinds: list[str] = []
    with anyio.fail_after(15):
        async with client.monitor(session_ids=list(channels.values()), interval=FAST, poll="auto") as monitor:
            async for t in monitor:
                kinds.append(t.kind)
                if kinds.count("stable") == 3 and len(kinds) == 12:
                    everything = [e for sid in channels.values() for e in emu.sessions[sid].events]
                    oldest_first = sorted(everything, key=lambda e: (e.updated_at, e.id))
                    body = msgspec.json.encode(Page(data=oldest_first, total=len(oldest_first)))
                    emu.faults.add("GET /events", Fault(body=body), times="always", when=app_wide)
                    for channel_id in channels:
                        emu.interrupt_signal(channel_id)
                if kinds.count("interrupted") == 3:
                    break
    assert [r.getMessage() for r in caplog.records if FALLBACK in r.getMessage()] != []
