"""The app-wide feed: its probe, a refusal after it, and a monitor that goes on after its last watch ended."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

import anyio
import msgspec
import pytest

from sigma_async import FeedRefused, RetryPolicy, SigmaClient, Transition, WatchError
from sigma_async.models import Event, Page
from sigma_async.testing import Emulator, Fault
from sigma_async.testing._faults import JournalEntry
from sigma_async.watch import Monitor

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


class _Gated:
    """The emulator's client with two gates: the first own events read of one session is answered when asked and
    reaches the watcher only once ``release`` is set (a read still on its way), and the app-wide events listing's
    ``n``-th read waits for ``gates[n]``."""

    def __init__(self, client: SigmaClient, session_id: str, gates: dict[int, anyio.Event]) -> None:
        self.channels = client.channels
        self.sessions = client.sessions
        self.events = self
        self._events = client.events
        self._session_id = session_id
        self._gates = gates
        self._app_reads = 0
        self.answered = anyio.Event()
        self.release = anyio.Event()

    async def list(self, session_id: str, *, page: int = 1, per_page: int = 100) -> Page[Event]:
        answer = await self._events.list(session_id, page=page, per_page=per_page)
        if session_id == self._session_id and not self.answered.is_set():
            self.answered.set()
            await self.release.wait()
        return answer

    async def list_app(self, *, page: int = 1, per_page: int = 100) -> Page[Event]:
        self._app_reads += 1
        gate = self._gates.get(self._app_reads)
        if gate is not None:
            await gate.wait()
        return await self._events.list_app(page=page, per_page=per_page)


async def test_an_event_between_an_own_read_in_flight_and_the_probe_page_is_not_lost(
    emu: Emulator, client: SigmaClient
) -> None:
    # The probe fails, so the session reads on its own; the probe passes while that read is still on its way. An
    # event written after the read was answered is on the probe page, which the feed takes as read and routes to
    # nobody; enough events after it keep the feed's next pass from reaching back to it, and a later event the
    # feed brings moves the session's mark past it. Only a read of the session's own that begins after the probe
    # page can bring it. (Found by an independent attack: lost 5 times out of 5.)
    ch, sid = on_air(emu, "held")
    _, noise = on_air(emu, "noise")  # not watched: other sessions of the app, busy
    emu.faults.add("GET /events", Fault(status=503), times=1, when=app_wide)
    probe, next_pass = anyio.Event(), anyio.Event()
    held = _Gated(client, sid, {2: probe, 3: next_pass})  # 1: the probe that fails, 2: its retry, 3: the next pass

    def app_wide_answers() -> int:
        return sum(1 for e in emu.journal.entries("GET /events") if app_wide(e) and e.status == 200)

    async def until(condition: Callable[[], bool]) -> None:
        while not condition():  # noqa: ASYNC110 - a condition on the emulator's journal, within fail_after below
            await anyio.sleep(FAST / 4)

    async def script() -> None:
        await held.answered.wait()
        emu.interrupt_signal(ch)
        for _ in range(700):
            emu.add_event(noise, "stable")
        probe.set()
        await until(lambda: app_wide_answers() >= 1)  # the retried probe, the event on its page
        for _ in range(900):
            emu.add_event(noise, "stable")
        next_pass.set()
        await until(lambda: app_wide_answers() >= 2)  # the next pass: it does not reach back to the event
        held.release.set()
        await until(lambda: app_wide_answers() >= 4)
        emu.restore_signal(ch)  # brought by the feed: the session's mark moves past the lost event
        await until(lambda: app_wide_answers() >= 7)
        emu.stop_channel(ch)

    kinds: list[str] = []
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(script)
            async with Monitor(held, session_ids=[sid], interval=FAST, poll="feed", stagger=False) as monitor:
                async for t in monitor:
                    kinds.append(t.kind)
    assert kinds == ["initializing", "started", "live", "stable", "interrupted", "restored", "stopped", "ended"]
