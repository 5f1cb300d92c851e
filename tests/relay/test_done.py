"""Finishing: a session whose ``Ended`` went out is done for good, relays and replicas with nothing left exit 0,
and the cursor store holds the sessions being watched, not every session ever seen."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import nats
import pytest

from sigma_async.relay import DONE, FileCursorStore, NatsCursorStore, Relay
from sigma_async.relay._kv import CURSOR_PREFIX, snapshot
from sigma_async.relay._leases import ReplicaLeases, open_bucket
from sigma_async.testing import Emulator, NatsServer
from sigma_async.watch._cursor import decode_cursor

from ._support import ScriptedSink, by_session, live_session, no_wait, run_course
from .test_fencing import until
from .test_relay import assert_in_order_once

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="sends POSIX signals")


@pytest.fixture
async def server() -> AsyncIterator[NatsServer]:
    async with NatsServer() as s:
        yield s


async def test_an_ended_session_is_done_and_a_restart_watches_nothing_and_exits_at_once(
    emu: Emulator, tmp_path: Path
) -> None:
    pairs = [live_session(emu, f"done-{i}") for i in range(3)]
    sessions = [sid for _, sid in pairs]
    path = tmp_path / "cursors.json"
    sink = ScriptedSink()
    async with emu.client() as client:
        first = Relay(client, sink, FileCursorStore(path), session_ids=sessions, interval=0.02, sleep=no_wait)
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                await tg.start(first.run)
                for channel_id, _ in pairs:
                    run_course(emu, channel_id)
        assert json.loads(path.read_text()) == dict.fromkeys(sessions, DONE)

        before = emu.journal.count()
        again = ScriptedSink()
        second = Relay(client, again, FileCursorStore(path), session_ids=sessions, interval=0.02, sleep=no_wait)
        with anyio.fail_after(5):
            await second.run()
    assert again.accepted == [] and emu.journal.count() == before, "not one request for a session that is done"


async def follow_sessions_coming_and_going(emu: Emulator, store: Any, count: int) -> tuple[list[str], list[str]]:
    """A relay over a channel whose ``count`` sessions come and go, and two sessions watched directly, to the end
    of all of them; returns (the channel's session ids, the direct ones)."""
    channel = emu.create_channel("follow")
    direct = [live_session(emu, f"direct-{i}") for i in range(2)]
    sink = ScriptedSink()
    followed: list[str] = []

    def ended(sid: str) -> bool:
        return any(r["kind"] == "ended" for r in by_session(sink.accepted).get(sid, []))

    async with emu.client() as client:
        relay = Relay(client, sink, store, session_ids=[sid for _, sid in direct], channel_ids=[channel.id],
                      interval=0.02, sleep=no_wait)  # fmt: skip
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                await tg.start(relay.run)
                for _ in range(count):
                    sid = emu.start_channel(channel.id).id
                    emu.connect_publisher(channel.id)
                    followed.append(sid)
                    await emu.wait_for(lambda: sid in by_session(sink.accepted), timeout=10)  # noqa: B023
                    emu.interrupt_signal(channel.id)
                    emu.stop_channel(channel.id)
                    await emu.wait_for(lambda: ended(sid), timeout=10)  # noqa: B023
                for channel_id, _ in direct:
                    run_course(emu, channel_id)
                await emu.wait_for(lambda: all(ended(sid) for _, sid in direct), timeout=10)
                relay.stop()  # a channel is still followed: only a stop ends this run
    grouped = by_session(sink.accepted)
    for sid in followed + [sid for _, sid in direct]:
        assert_in_order_once(grouped[sid])
    return followed, [sid for _, sid in direct]


async def test_the_file_store_keeps_the_live_sessions_not_the_history(emu: Emulator, tmp_path: Path) -> None:
    path = tmp_path / "cursors.json"
    followed, direct = await follow_sessions_coming_and_going(emu, FileCursorStore(path), 8)
    saved = json.loads(path.read_text())
    # Done-markers of the listed sessions; of the channel's eight, only its newest's Ended cursor, the one marker
    # from which a restart finds the sessions that came and went while it was down.
    assert saved.keys() == {*direct, followed[-1]}
    assert {saved[sid] for sid in direct} == {DONE} and decode_cursor(saved[followed[-1]], followed[-1]).k == "ended"
    assert path.stat().st_size < 1_000

    # The listed sessions leave the list: their done-markers go at the next start.
    async with emu.client() as client:
        relay = Relay(client, ScriptedSink(), FileCursorStore(path), channel_ids=[], session_ids=[followed[-1]],
                      interval=0.02, sleep=no_wait)  # fmt: skip
        with anyio.fail_after(10):
            await relay.run()  # the store knew nothing of that session: relayed whole, to its end
    assert json.loads(path.read_text()) == {followed[-1]: DONE}


async def test_a_restart_reports_the_sessions_of_a_channel_that_came_and_went_while_it_was_down(
    emu: Emulator, tmp_path: Path
) -> None:
    path = tmp_path / "cursors.json"
    channel = emu.create_channel("while-down")

    async def relay_until(sink: ScriptedSink, done: Callable[[], bool], then: Callable[[], object]) -> None:
        async with emu.client() as client:
            relay = Relay(client, sink, FileCursorStore(path), channel_ids=[channel.id], interval=0.02, sleep=no_wait)
            looks = emu.journal.count("GET /sessions")
            with anyio.fail_after(20):
                async with anyio.create_task_group() as tg:
                    await tg.start(relay.run)
                    await emu.wait_for(lambda: emu.journal.count("GET /sessions") > looks)  # it has looked
                    then()
                    await emu.wait_for(done, timeout=15)
                    relay.stop()

    def a_session() -> str:
        sid = emu.start_channel(channel.id).id
        emu.connect_publisher(channel.id)
        emu.stop_channel(channel.id)
        return sid

    first, second = ScriptedSink(), ScriptedSink()
    seen: list[str] = []
    await relay_until(
        first, lambda: any(r["kind"] == "ended" for r in first.accepted), lambda: seen.append(a_session())
    )
    before = seen[0]
    missed = [a_session(), a_session()]  # while it is down, two sessions start and end
    await relay_until(
        second, lambda: {r["session_id"] for r in second.accepted if r["kind"] == "ended"} >= set(missed), lambda: None
    )
    assert {r["session_id"] for r in first.accepted} == {before}
    for sid in missed:
        assert [r["kind"] for r in by_session(second.accepted)[sid]] == [
            "initializing", "started", "live", "stable", "stopped", "ended",
        ]  # fmt: skip
    assert before not in by_session(second.accepted)


async def test_the_kv_store_keeps_the_live_sessions_not_the_history(emu: Emulator, server: NatsServer) -> None:
    url = f"{server.url}/relay"
    _, direct = await follow_sessions_coming_and_going(emu, await NatsCursorStore.open(url), 8)
    async with open_bucket(url) as kv:
        entries = await snapshot(kv, CURSOR_PREFIX, timeout=5)
    kept = {e.key: e.value.decode() for e in entries.values()}
    channel_marker = {k: v for k, v in kept.items() if v != DONE}
    assert {k: v for k, v in kept.items() if v == DONE} == {f"{CURSOR_PREFIX}{sid}": DONE for sid in direct}
    assert len(channel_marker) == 1, "the channel's newest Ended cursor, and nothing else of its history"
    nc = await nats.connect(server.url)
    try:
        state = (await nc.jetstream().stream_info("KV_relay")).state
    finally:
        await nc.close()
    assert state.messages == len(direct) + 1, "no delete marker or old revision left behind for a session gone"


async def relay_process(emu: Emulator, tmp: Path, name: str, nats_url: str, sessions: list[str]) -> Any:
    env = {**os.environ, "SIGMA_BASE_URL": emu.url, "SIGMA_USERNAME": emu.username,
           "SIGMA_SECRET_KEY": emu.secret_key, "SIGMA_APP_ID": emu.app_id}  # fmt: skip
    argv = [sys.executable, "-m", "sigma_async", "relay", "-v", "--sink", f"{nats_url}/SIGMA", "--store",
            f"{nats_url}/relay", "--replica", name, "--lease-ttl", "2", "--interval", "0.1"]  # fmt: skip
    for sid in sessions:
        argv += ["--session", sid]
    with (tmp / f"{name}.log").open("wb") as log:
        return await anyio.open_process(argv, stdout=log, stderr=log, env=env)


async def test_replicas_whose_whole_list_is_done_exit_0_and_hold_no_lease(
    emu: Emulator, server: NatsServer, tmp_path: Path
) -> None:
    pairs = [live_session(emu, f"rep-{i}") for i in range(6)]
    sessions = [sid for _, sid in pairs]
    log = lambda name: (tmp_path / f"{name}.log").read_text(errors="replace")  # noqa: E731
    procs = {name: await relay_process(emu, tmp_path, name, server.url, sessions) for name in ("a", "b")}
    nc = await nats.connect(server.url)
    try:
        js = nc.jetstream()

        async def subjects() -> list[str]:
            try:
                info = await js.stream_info("SIGMA")
            except nats.js.errors.NotFoundError:
                return []
            return [(await js.get_msg("SIGMA", seq)).subject for seq in range(1, info.state.last_seq + 1)]

        deadline = time.monotonic() + 20
        while {s.split(".")[1] for s in await subjects()} != set(sessions):
            assert time.monotonic() < deadline, "every session's first records out"
            await anyio.sleep(0.05)
        for channel_id, _ in pairs:
            emu.stop_channel(channel_id)
        ended_at = time.monotonic()
        for name, proc in procs.items():
            with anyio.fail_after(20):
                await proc.wait()
            assert proc.returncode == 0, f"{name} exited {proc.returncode}:\n{log(name)}"
        print(f"both replicas exited {time.monotonic() - ended_at:.1f}s after the sessions were stopped")
        assert sorted(s.rpartition(".")[2] for s in await subjects()).count("ended") == len(sessions)

        async with open_bucket(f"{server.url}/relay") as kv:
            leases = await snapshot(kv, "lease.", timeout=5)
            cursors = await snapshot(kv, CURSOR_PREFIX, timeout=5)
            heartbeats = await snapshot(kv, "replicas.", timeout=5)
        assert len(leases) == len(sessions) and all(json.loads(e.value)["done"] for e in leases.values())
        assert {e.value.decode() for e in cursors.values()} == {DONE} and len(cursors) == len(sessions)
        assert heartbeats == {}, "a replica that left leaves nothing behind"

        # One more replica with the same list: nothing to lease, nothing to send; it exits at once.
        late = await relay_process(emu, tmp_path, "c", server.url, sessions)
        with anyio.fail_after(15):
            await late.wait()
        assert late.returncode == 0, log("c")
        assert "lease acquired" not in log("c") and "relay: 0 delivered" in log("c")

        # The list shrinks to one session: the others' done-markers, cursors and leases alike, go at start.
        kept = await relay_process(emu, tmp_path, "d", server.url, sessions[:1])
        with anyio.fail_after(15):
            await kept.wait()
        assert kept.returncode == 0, log("d")
        async with open_bucket(f"{server.url}/relay") as kv:
            leases = await snapshot(kv, "lease.", timeout=5)
            cursors = await snapshot(kv, CURSOR_PREFIX, timeout=5)
        assert [e.key for e in leases.values()] == [f"lease.session.{sessions[0]}"]
        assert [e.key for e in cursors.values()] == [f"{CURSOR_PREFIX}{sessions[0]}"]
        state = (await js.stream_info("KV_relay")).state
        assert state.messages == 2, "nothing else left in the bucket, not even delete markers"
    finally:
        await nc.close()
        for proc in procs.values():
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                await proc.wait()


async def test_done_sessions_cost_no_lease_writes_while_a_channel_keeps_replicas_running(
    emu: Emulator, server: NatsServer
) -> None:
    url = f"{server.url}/relay"
    pairs = [live_session(emu, f"quiet-{i}") for i in range(6)]
    sessions = [sid for _, sid in pairs]
    channel = emu.create_channel("keeps-them-running")
    sinks = [ScriptedSink(), ScriptedSink()]
    async with open_bucket(url) as kv_a, open_bucket(url) as kv_b, open_bucket(url) as kv, emu.client() as client:
        relays = [
            Relay(client, sink, await NatsCursorStore.open(url), session_ids=sessions, channel_ids=[channel.id],
                  interval=0.02, sleep=no_wait, ownership=ReplicaLeases(bucket, replica=name, ttl=1.2))
            for sink, bucket, name in zip(sinks, (kv_a, kv_b), "ab", strict=True)
        ]  # fmt: skip

        def ended() -> set[str]:
            return {r["session_id"] for sink in sinks for r in sink.accepted if r["kind"] == "ended"}

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for relay in relays:
                    await tg.start(relay.run)
                for channel_id, _ in pairs:
                    run_course(emu, channel_id)
                await emu.wait_for(lambda: ended() == set(sessions), timeout=15)

                async def leases() -> dict[str, Any]:
                    return await snapshot(kv, "lease.", timeout=5)

                async def all_marked_done() -> bool:
                    found = (await leases()).items()
                    marked = [json.loads(e.value).get("done") for k, e in found if k.startswith("lease.session")]
                    return len(marked) == len(sessions) and all(marked)

                await until(all_marked_done, "every session's lease marked done", 15)
                before = await leases()
                channel_key = f"lease.channel.{channel.id}"

                async def renewed_thrice() -> bool:
                    # Three renewals of the channel's lease: time enough for any other lease to be written.
                    return bool((await leases())[channel_key].revision >= before[channel_key].revision + 3)

                await until(renewed_thrice, "the channel's lease renewed three times", 15)
                after = await leases()
                for relay in relays:
                    relay.stop()
    sessions_before = {k: e.revision for k, e in before.items() if k != channel_key}
    assert {k: after[k].revision for k in sessions_before} == sessions_before, "a done session's lease was written"
    assert len(sessions_before) == len(sessions)
