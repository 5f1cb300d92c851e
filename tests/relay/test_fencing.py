"""Fencing against a real nats-server: a paused replica sends nothing once it may have lost its lease, and a
cursor save that lost its compare-and-set never overwrites a newer cursor."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
from aiohttp import web

from sigma_async.relay import NatsCursorStore, Relay, StaleCursorError
from sigma_async.relay._kv import cursor_key
from sigma_async.relay._leases import ReplicaLeases, open_bucket
from sigma_async.testing import Emulator, NatsServer

from ._support import ScriptedSink, live_session, no_wait

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="sends POSIX signals")

TTL = 2.0


@pytest.fixture
async def server() -> AsyncIterator[NatsServer]:
    async with NatsServer() as s:
        yield s


async def test_a_save_that_lost_its_compare_and_set_fails_and_leaves_the_newer_cursor(server: NatsServer) -> None:
    url = f"{server.url}/relay"
    a, b = await NatsCursorStore.open(url), await NatsCursorStore.open(url)
    try:
        assert await a.load("s-1") is None and await b.load("s-1") is None
        await b.save("s-1", "b1")
        with pytest.raises(StaleCursorError):
            await a.save("s-1", "a1")  # a read "nothing there": b's create came first
        assert await b.load("s-1") == "b1"

        assert await a.load("s-1") == "b1"
        await a.save("s-1", "a2")
        await a.save("s-1", "a3")  # a's own revision moves on with each save
        with pytest.raises(StaleCursorError):
            await b.save("s-1", "b2")  # b last read b1's revision, since overwritten by a
        assert await a.load("s-1") == "a3"
    finally:
        await a.aclose()
        await b.aclose()


class PausingStore:
    """A store that stops the next save right after the fence passed, until told to go on."""

    def __init__(self, inner: NatsCursorStore) -> None:
        self.inner = inner
        self.pause_next = False
        self.paused, self.go_on, self.finished = anyio.Event(), anyio.Event(), anyio.Event()
        self.outcome: BaseException | None = None

    async def load(self, key: str) -> str | None:
        return await self.inner.load(key)

    async def load_all(self) -> dict[str, str]:
        return await self.inner.load_all()

    async def save(self, key: str, cursor: str) -> None:
        if not self.pause_next:
            await self.inner.save(key, cursor)
            return
        self.pause_next = False
        self.paused.set()
        await self.go_on.wait()
        try:
            await self.inner.save(key, cursor)
        except BaseException as exc:
            self.outcome = exc
            raise
        finally:
            self.finished.set()

    async def drop(self, key: str) -> None:
        await self.inner.drop(key)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_replica_paused_between_fence_and_save_cannot_overwrite_the_new_owners_cursor(
    emu: Emulator, server: NatsServer
) -> None:
    url = f"{server.url}/relay"
    channel_id, sid = live_session(emu)
    store = PausingStore(await NatsCursorStore.open(url))
    sink = ScriptedSink()
    async with open_bucket(url) as kv, emu.client() as client:
        leases = ReplicaLeases(kv, replica="a", ttl=30.0)  # long: only the injected pause matters here
        relay = Relay(client, sink, store, session_ids=[sid], ownership=leases, interval=0.02, sleep=no_wait)
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                await tg.start(relay.run)
                await emu.wait_for(lambda: sink.accepted, timeout=10)
                await until(lambda: _saved(store, sid), "the first records' cursor saved", 10)
                store.pause_next = True
                emu.interrupt_signal(channel_id)
                await store.paused.wait()  # a's save of "interrupted" passed its fence and stops there
                stale = sink.accepted[-1]["cursor"]

                # Meanwhile another replica takes the session over, delivers further and saves its cursor.
                lease_key = "lease.session." + sid.replace(".", "=2E")
                entry = await kv.get(lease_key)
                intruder = msgspec.json.encode({"holder": "b", "token": "t-b", "ttl": 30.0})
                await kv.update(lease_key, intruder, last=entry.revision)
                emu.restore_signal(channel_id)
                await emu.wait_for(lambda: sink.accepted[-1]["kind"] == "restored", timeout=10)
                newer = sink.accepted[-1]["cursor"]
                await kv.put(cursor_key(sid), newer.encode())

                store.go_on.set()
                await store.finished.wait()
                relay.stop()
    assert stale != newer
    assert isinstance(store.outcome, StaleCursorError), "the late save lost its compare-and-set"
    async with open_bucket(url) as kv:
        assert (await kv.get(cursor_key(sid))).value.decode() == newer, "the newer cursor stands"


async def _saved(store: PausingStore, sid: str) -> bool:
    return await store.load(sid) is not None


class Receiver:
    """Two webhook paths, one per replica: ``/a`` always answers 503, ``/b`` accepts."""

    def __init__(self) -> None:
        self.requests: dict[str, list[tuple[float, dict[str, Any]]]] = {"a": [], "b": []}

    async def handle(self, request: web.Request) -> web.Response:
        path = request.match_info["who"]
        self.requests[path].append((time.monotonic(), json.loads(await request.read())))
        return web.Response(status=503 if path == "a" else 200)

    def accepted(self) -> list[dict[str, Any]]:
        return [record for _, record in self.requests["b"]]


async def start_relay(emu: Emulator, tmp: Path, name: str, sink: str, store: str, sid: str) -> Any:
    env = {**os.environ, "SIGMA_BASE_URL": emu.url, "SIGMA_USERNAME": emu.username,
           "SIGMA_SECRET_KEY": emu.secret_key, "SIGMA_APP_ID": emu.app_id}  # fmt: skip
    log = (tmp / f"{name}.log").open("wb")
    try:
        return await anyio.open_process(
            [sys.executable, "-m", "sigma_async", "relay", "-v", "--sink", sink, "--store", store, "--replica", name,
             "--lease-ttl", str(TTL), "--interval", "0.1", "--session", sid],
            stdout=log, stderr=log, env=env,
        )  # fmt: skip
    finally:
        log.close()


async def until(condition: Any, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout}s: {what}")
        await anyio.sleep(0.05)


async def test_a_replica_paused_while_retrying_sends_nothing_after_another_took_over(
    emu: Emulator, server: NatsServer, tmp_path: Path
) -> None:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/{who}", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    hook = f"http://127.0.0.1:{runner.addresses[0][1]}"
    store = f"{server.url}/relay"
    channel_id, sid = live_session(emu)
    procs: dict[str, Any] = {}
    log = lambda name: (tmp_path / f"{name}.log").read_text(errors="replace")  # noqa: E731
    try:
        async with open_bucket(store) as kv:
            procs["a"] = await start_relay(emu, tmp_path, "a", f"{hook}/a", store, sid)

            async def a_retries() -> bool:
                return len(receiver.requests["a"]) >= 2

            await until(a_retries, "a retries its first record against the 503", 20)
            os.kill(procs["a"].pid, signal.SIGSTOP)
            procs["b"] = await start_relay(emu, tmp_path, "b", f"{hook}/b", store, sid)

            async def b_took_over() -> bool:
                return "from=expired holder=a" in log("b") and bool(receiver.accepted())

            await until(b_took_over, "b takes the lease a could not renew, and delivers", TTL + 20)
            emu.interrupt_signal(channel_id)
            emu.restore_signal(channel_id)

            async def b_delivered_later_records() -> bool:
                return [r["kind"] for r in receiver.accepted()][-2:] == ["interrupted", "restored"]

            await until(b_delivered_later_records, "b delivers the session's later records", 20)
            beat = await kv.get("replicas.a")
            woke = time.monotonic()
            os.kill(procs["a"].pid, signal.SIGCONT)

            async def a_stood_down() -> bool:
                # Two heartbeats since waking, holding nothing: a has seen the lease is b's.
                entry = await kv.get("replicas.a")
                return entry.revision > beat.revision and json.loads(entry.value)["held"] == 0 and (
                    "lease lost" in log("a") or "not sent" in log("a")
                )

            await until(a_stood_down, "a notices it lost the lease", 20)
            late = [record["kind"] for at, record in receiver.requests["a"] if at >= woke]
            assert late == [], f"the paused replica posted {late} after waking:\n{log('a')}"
            kinds = [r["kind"] for r in receiver.accepted()]
            ids = [r["id"] for r in receiver.accepted()]
            assert kinds[-2:] == ["interrupted", "restored"] and len(ids) == len(set(ids)), kinds
    finally:
        for proc in procs.values():
            if proc.returncode is None:
                proc.send_signal(signal.SIGCONT)
                proc.terminate()
        for proc in procs.values():
            with anyio.fail_after(15):
                await proc.wait()
            await proc.aclose()
        await runner.cleanup()


class GatedSink(ScriptedSink):
    """Accepts at once until ``hold`` is set; then each delivery waits for ``gate``."""

    def __init__(self) -> None:
        super().__init__()
        self.hold, self.gate, self.waiting = False, anyio.Event(), 0

    async def deliver(self, record: bytes, transition: Any) -> Any:
        if self.hold:
            self.waiting += 1
            await self.gate.wait()
        return await super().deliver(record, transition)


async def test_a_key_handed_over_in_a_rebalance_is_not_sent_twice(emu: Emulator, server: NatsServer) -> None:
    url = f"{server.url}/relay"
    pairs = [live_session(emu, f"handover-{i}") for i in range(2)]
    sessions = [sid for _, sid in pairs]
    sink_a, sink_b = GatedSink(), ScriptedSink()
    async with open_bucket(url) as kv_a, open_bucket(url) as kv_b, emu.client() as client:
        a = Relay(client, sink_a, await NatsCursorStore.open(url), session_ids=sessions, interval=0.02,
                  ownership=ReplicaLeases(kv_a, replica="a", ttl=3.0), sleep=no_wait)  # fmt: skip
        b = Relay(client, sink_b, await NatsCursorStore.open(url), session_ids=sessions, interval=0.02,
                  ownership=ReplicaLeases(kv_b, replica="b", ttl=3.0), sleep=no_wait)  # fmt: skip
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                await tg.start(a.run)
                await emu.wait_for(lambda: {r["session_id"] for r in sink_a.accepted} == set(sessions), timeout=10)
                sink_a.hold = True
                for channel_id, _ in pairs:
                    emu.interrupt_signal(channel_id)
                await emu.wait_for(lambda: sink_a.waiting == 2, timeout=10)  # both in flight at a

                await tg.start(b.run)  # b joins: a gives one of the two keys up while its delivery is in flight
                await emu.wait_for(lambda: len(a._owned) == 1, timeout=10)  # a's release has begun
                sink_a.gate.set()
                await emu.wait_for(lambda: len(b.ownership.held) == 1, timeout=10)  # type: ignore[attr-defined]
                for channel_id, _ in pairs:
                    emu.restore_signal(channel_id)
                await emu.wait_for(lambda: sum(r["kind"] == "restored" for r in sink_a.accepted + sink_b.accepted) == 2,
                                   timeout=10)  # fmt: skip
                a.stop()
                b.stop()
    sent_by_a = {r["id"] for r in sink_a.accepted}
    again = [r["kind"] for r in sink_b.accepted if r["id"] in sent_by_a]
    assert again == [], f"b sent again what a had delivered before handing the key over: {again}"
