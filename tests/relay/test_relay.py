"""The relay runner against the emulator: order per session, retries, rejections, cursors, resume, stop."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import anyio
import pytest
from anyio.abc import TaskStatus

from sigma_async import AuthenticationError, SigmaClient
from sigma_async.relay import DONE, Claims, MemoryCursorStore, Outcome, Relay
from sigma_async.testing import Emulator
from sigma_async.transitions import Transition

from ._support import ScriptedSink, by_session, live_session, no_wait, run_course, server_event_ids

INTERVAL = 0.02


def relay_for(emu_client: Any, sink: Any, store: Any = None, **kw: Any) -> Relay:
    return Relay(emu_client, sink, store, interval=INTERVAL, sleep=no_wait, **kw)


def assert_in_order_once(records: Sequence[dict[str, Any]]) -> None:
    """One session's records: each id once and non-empty, each ``previous`` the kind before it, ``ended`` last."""
    ids = [r["id"] for r in records]
    assert all(ids), "every record carries the transition id"
    assert len(ids) == len(set(ids)), ids
    assert records[0]["previous"] is None
    for before, after in itertools.pairwise(records):
        assert after["previous"] == before["kind"], [r["kind"] for r in records]
    assert records[-1]["kind"] == "ended"


async def test_every_transition_goes_out_in_order_and_the_relay_ends_with_the_sessions(emu: Emulator) -> None:
    sessions = [live_session(emu, f"ch-{i}") for i in range(3)]
    sink, store = ScriptedSink(), MemoryCursorStore()
    async with emu.client() as client:
        relay = relay_for(client, sink, store, session_ids=[sid for _, sid in sessions])
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                await tg.start(relay.run)
                await emu.wait_for(lambda: len(sink.accepted) >= 9)  # each session's first three, at least
                for channel_id, _ in sessions:
                    run_course(emu, channel_id)
                # run() returns by itself: every watched session has ended and been delivered.
    grouped = by_session(sink.accepted)
    assert set(grouped) == {sid for _, sid in sessions}
    for _, sid in sessions:
        assert_in_order_once(grouped[sid])
        delivered = {r["event"]["id"] for r in grouped[sid] if r["event"]}
        assert delivered == server_event_ids(emu, sid), "every event the server lists, once"
        assert store.cursors[sid] == DONE, "an ended session keeps a done-marker in place of its cursor"
    assert relay.stats.delivered == len(sink.accepted) and relay.stats.retried == 0
    assert sink.closed


async def test_a_failing_destination_holds_back_only_that_session(emu: Emulator) -> None:
    (ch_a, sid_a), (ch_b, sid_b) = live_session(emu, "a"), live_session(emu, "b")

    def decide(t: Transition, attempt: int) -> Exception | None:
        # Every record of session A fails three times before it goes through.
        return ConnectionError("receiver away") if t.session_id == sid_a and attempt <= 3 else None

    sink = ScriptedSink(decide)
    async with emu.client() as client:
        relay = relay_for(client, sink, session_ids=[sid_a, sid_b])
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                await tg.start(relay.run)
                run_course(emu, ch_a)
                run_course(emu, ch_b)
    grouped = by_session(sink.accepted)
    assert_in_order_once(grouped[sid_a])
    assert_in_order_once(grouped[sid_b])
    assert all(sink.attempts[r["id"]] == 4 for r in grouped[sid_a])
    assert all(sink.attempts[r["id"]] == 1 for r in grouped[sid_b])
    assert relay.stats.retried == 3 * len(grouped[sid_a])


async def test_a_rejected_record_is_skipped_and_the_session_goes_on(emu: Emulator) -> None:
    channel_id, sid = live_session(emu)
    sink = ScriptedSink(lambda t, _: Outcome.rejected("HTTP 400") if t.kind == "interrupted" else None)
    store = MemoryCursorStore()
    async with emu.client() as client:
        relay = relay_for(client, sink, store, session_ids=[sid])
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                await tg.start(relay.run)
                run_course(emu, channel_id)
    kinds = [r["kind"] for r in sink.accepted]
    assert "interrupted" not in kinds and kinds[-2:] == ["stopped", "ended"] and "restored" in kinds
    assert relay.stats.rejected == 1
    assert store.cursors[sid] == DONE


async def test_a_new_run_resumes_from_the_saved_cursors(emu: Emulator) -> None:
    (ch_a, sid_a), (ch_b, sid_b) = live_session(emu, "a"), live_session(emu, "b")
    channel_c = emu.create_channel("c")
    store = MemoryCursorStore()
    first = ScriptedSink()
    async with emu.client() as client:
        relay = relay_for(client, first, store, session_ids=[sid_a, sid_b], channel_ids=[channel_c.id])
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                await tg.start(relay.run)
                sid_c = emu.start_channel(channel_c.id).id
                emu.connect_publisher(channel_c.id)
                await emu.wait_for(lambda: {sid_a, sid_b, sid_c} <= {r["session_id"] for r in first.accepted})
                await emu.wait_for(lambda: len(by_session(first.accepted)[sid_c]) >= 3)
                relay.stop()
        # While no relay runs, the sessions go on and end.
        for channel_id in (ch_a, ch_b, channel_c.id):
            run_course(emu, channel_id)
        second = ScriptedSink()
        relay = relay_for(client, second, store, session_ids=[sid_a, sid_b], channel_ids=[channel_c.id])
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                await tg.start(relay.run)
                await emu.wait_for(lambda: {sid_a, sid_b, sid_c} <= {
                    r["session_id"] for r in second.accepted if r["kind"] == "ended"
                })
                relay.stop()  # the channel is still followed: only a stop ends this run
    first_ids = {r["id"] for r in first.accepted}
    assert not first_ids & {r["id"] for r in second.accepted}, "a stopped run saved what it delivered"
    grouped = by_session([*first.accepted, *second.accepted])
    for sid in (sid_a, sid_b, sid_c):
        assert_in_order_once(grouped[sid])
        assert {r["event"]["id"] for r in grouped[sid] if r["event"]} == server_event_ids(emu, sid)


async def test_stop_lets_the_delivery_in_flight_finish_and_saves_its_cursor(emu: Emulator) -> None:
    channel_id, sid = live_session(emu)
    entered, release = anyio.Event(), anyio.Event()

    class SlowSink(ScriptedSink):
        async def deliver(self, record: bytes, transition: Transition) -> Outcome:
            entered.set()
            await release.wait()
            return await super().deliver(record, transition)

    sink, store = SlowSink(), MemoryCursorStore()
    async with emu.client() as client:
        relay = relay_for(client, sink, store, session_ids=[sid])
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                await tg.start(relay.run)
                await entered.wait()
                run_course(emu, channel_id)  # more to deliver, which the stop leaves for the next run
                relay.stop()
                release.set()
    assert len(sink.accepted) == 1
    assert store.cursors[sid] == sink.accepted[0]["cursor"]
    assert sink.closed


async def test_a_fenced_cursor_is_not_saved(emu: Emulator) -> None:
    channel_id, sid = live_session(emu)

    class LostEverything:
        stays_open = False

        async def run(self, keys: Sequence[str], claims: Claims, *, task_status: TaskStatus[None]) -> None:
            for key in keys:
                await claims.acquire(key)
            task_status.started()

        async def fence(self, key: str) -> bool:
            return False  # another replica took every key

    sink, store = ScriptedSink(), MemoryCursorStore()
    async with emu.client() as client:
        relay = relay_for(client, sink, store, session_ids=[sid], ownership=LostEverything())
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                await tg.start(relay.run)
                run_course(emu, channel_id)
    assert sink.accepted and store.cursors == {}


async def test_credentials_the_api_refuses_stop_the_relay(emu: Emulator) -> None:
    _, sid = live_session(emu)
    sink = ScriptedSink()
    wrong = SigmaClient(username=emu.username, secret_key="wrong", app_id=emu.app_id, base_url=emu.url)
    async with wrong as client:
        relay = relay_for(client, sink, session_ids=[sid])
        with anyio.fail_after(20), pytest.raises(AuthenticationError):
            await relay.run()
    assert sink.closed and sink.accepted == []
