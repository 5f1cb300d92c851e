"""Replicas end to end: ``python -m sigma_async relay`` processes sharing one NATS server, against a standalone
emulator process, with one replica killed (``kill -9``), one joining, and one paused past its lease (SIGSTOP).

What a user of the stream would notice is checked on the stream itself: every event once, each session's
``ended`` once and last, and how long the events written after a failure took to arrive. What the stream's
deduplication would hide is checked on the replicas' own counters (``/metrics``) and on the cursor writes seen
on the bucket's subjects: no record delivered twice beyond one in flight, no cursor ever saved backwards.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import nats
import pytest
from anyio.abc import Process
from nats.js.api import StorageType

from sigma_async import SigmaClient
from sigma_async.testing._nats import NatsServer

TTL = 2.0
INTERVAL = 0.5
SESSIONS = 20
STREAM, BUCKET = "SIGMA", "relay"
READY = re.compile(r"listening on (http://127\.0\.0\.1:\d+) username=(\S+) app_id=(\S+) secret_key=(\S+)")


async def wait_until(condition: Callable[[], object], *, timeout: float, what: str) -> float:
    """Poll ``condition`` until true; the seconds it took; fail the test after ``timeout``."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            pytest.fail(f"not within {timeout}s: {what}")
        await anyio.sleep(0.05)
    return time.monotonic() - start


class Emulator:
    """``python -m sigma_async emulator`` in its own process, driven through its API and control routes."""

    def __init__(self, url: str, username: str, app_id: str, secret: str) -> None:
        self.url = url
        self.env = {"SIGMA_BASE_URL": url, "SIGMA_USERNAME": username, "SIGMA_APP_ID": app_id,
                    "SIGMA_SECRET_KEY": secret}
        self.client = SigmaClient(username=username, secret_key=secret, app_id=app_id, base_url=url)
        token = base64.b64encode(f"{username}:{secret}".encode()).decode()
        self._auth = {"headers": {"Authorization": f"Basic {token}", "X-App-Id": app_id}}
        self.http = aiohttp.ClientSession()

    async def control(self, channel_id: str, action: str) -> None:
        async with self.http.post(f"{self.url}/_emulator/sessions/{channel_id}/{action}", **self._auth) as r:
            assert r.status == 200, await r.text()

    async def signal_drop(self, channels: list[str]) -> float:
        """An interrupted and a restored event on each channel's session; returns when they were written."""
        for channel_id in channels:
            await self.control(channel_id, "interrupt")
            await self.control(channel_id, "restore")
        return time.monotonic()


class Relays:
    """Relay replicas as processes: started, killed, paused and resumed by name; their /metrics read."""

    def __init__(self, tmp: Path, nats_url: str, emulator: Emulator, sessions: list[str]) -> None:
        self.tmp, self.nats_url, self.emulator, self.sessions = tmp, nats_url, emulator, sessions
        self.procs: dict[str, Process] = {}
        self.ports: dict[str, int] = {}
        self.killed: set[str] = set()

    async def start(self, name: str) -> None:
        port = self.ports[name] = _free_port()
        argv = [sys.executable, "-m", "sigma_async", "relay", "-v", "--sink", f"{self.nats_url}/{STREAM}",
                "--store", f"{self.nats_url}/{BUCKET}", "--replica", name, "--lease-ttl", str(TTL),
                "--interval", str(INTERVAL), "--metrics-port", str(port)]
        for sid in self.sessions:
            argv += ["--session", sid]
        with (self.tmp / f"{name}.log").open("wb") as log:
            self.procs[name] = await anyio.open_process(
                argv, stdout=log, stderr=log, env={**os.environ, **self.emulator.env}
            )

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")

    def signal(self, name: str, sig: signal.Signals) -> None:
        os.kill(self.procs[name].pid, sig)
        if sig == signal.SIGKILL:
            self.killed.add(name)

    async def delivered(self, name: str) -> float:
        """The replica's ``sigma_relay_transitions_delivered_total``."""
        async with self.emulator.http.get(f"http://127.0.0.1:{self.ports[name]}/metrics") as r:
            text = await r.text()
        match = re.search(r"^sigma_relay_transitions_delivered_total\{[^}]*\} (\S+)$", text, re.M)
        return float(match.group(1)) if match else math.nan

    def delivered_at_exit(self, name: str) -> int:
        """What the replica said it delivered, in its last line (``relay: N delivered, ...``)."""
        found = re.findall(r"^relay: (\d+) delivered", self.log(name), re.M)
        assert found, f"{name} said nothing at exit:\n{self.log(name)}"
        return int(found[-1])

    async def finish_by_themselves(self, timeout: float) -> None:
        """Every replica still running exits 0 on its own: its whole list is done."""
        for name, proc in self.procs.items():
            if proc.returncode is None and name not in self.killed:
                with anyio.fail_after(timeout):
                    await proc.wait()
                assert proc.returncode == 0, f"{name} exited {proc.returncode}:\n{self.log(name)}"

    async def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.returncode is None:
                proc.send_signal(signal.SIGCONT)
                proc.terminate()
        for name, proc in self.procs.items():
            with anyio.fail_after(15):
                await proc.wait()
            await proc.aclose()
            assert proc.returncode in (0, -signal.SIGKILL), f"{name} exited {proc.returncode}:\n{self.log(name)}"


class Observed:
    """What arrives on the stream (with arrival times), the cursor writes on the bucket, and the heartbeats."""

    def __init__(self) -> None:
        self.records: list[tuple[float, dict[str, Any]]] = []
        self.cursor_writes: list[tuple[str, str]] = []
        self.kv: Any = None

    def by_session(self) -> dict[str, list[dict[str, Any]]]:
        grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for _, record in self.records:
            grouped[record["session_id"]].append(record)
        return grouped

    def event_ids(self) -> list[str]:
        return [r["event"]["id"] for _, r in self.records if r["event"]]

    def arrival(self, event_ids: set[str]) -> dict[str, float]:
        return {r["event"]["id"]: t for t, r in self.records if r["event"] and r["event"]["id"] in event_ids}

    async def held(self) -> dict[str, int]:
        """Leases held by each live replica, from their heartbeats in the bucket."""
        held: dict[str, int] = {}
        watcher = await self.kv.watch("replicas.>")
        async for entry in watcher:
            if entry is None:
                break
            if entry.value and entry.operation is None:
                beat = json.loads(entry.value)
                held[beat["replica"]] = beat["held"]
            if entry.delta == 0:
                break
        await watcher.stop()
        return held


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[Emulator, Relays, Observed, list[str]]]:
    """NATS, an emulator process with SESSIONS live sessions, the stream and bucket observed; relays not started."""
    async with await anyio.open_process(
        [sys.executable, "-m", "sigma_async", "emulator", "--port", "0"], stdout=subprocess.PIPE
    ) as emu_proc, NatsServer() as server:
        try:
            assert emu_proc.stdout is not None
            line = b""
            with anyio.fail_after(20):
                while not line.endswith(b"\n"):
                    line += await emu_proc.stdout.receive(1)
            ready = READY.search(line.decode())
            assert ready, f"the emulator said {line!r}"
            emulator = Emulator(*ready.groups())
            nc = await nats.connect(server.url)
            js = nc.jetstream()
            await js.add_stream(name=STREAM, subjects=["sigma.>"], storage=StorageType.FILE, duplicate_window=120)
            observed = Observed()
            observed.kv = await js.create_key_value(bucket=BUCKET, history=1)

            async def on_record(msg: Any) -> None:
                observed.records.append((time.monotonic(), json.loads(msg.data)))

            async def on_cursor(msg: Any) -> None:
                observed.cursor_writes.append((msg.subject.rpartition(".")[2], msg.data.decode()))

            await js.subscribe("sigma.>", stream=STREAM, ordered_consumer=True, cb=on_record)
            await nc.subscribe(f"$KV.{BUCKET}.cursor.>", cb=on_cursor)
            async with emulator.client, emulator.http:
                channels = []
                for i in range(SESSIONS):
                    channel = await _start_channel(emulator, f"ch-{i}")
                    channels.append(channel)
                sessions = [(await emulator.client.channels.get(c)).current_session_id for c in channels]
                relays = Relays(tmp_path, server.url, emulator, [s for s in sessions if s])
                try:
                    yield emulator, relays, observed, channels
                finally:
                    await relays.stop_all()
            await nc.close()
        finally:
            emu_proc.terminate()
            await emu_proc.wait()


async def _start_channel(emulator: Emulator, name: str) -> str:
    from sigma_async import ChannelCreate

    channel = await emulator.client.channels.create(ChannelCreate(name=name))
    await emulator.client.channels.start(channel.id)
    await emulator.control(channel.id, "publish")
    return channel.id


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def server_event_ids(emulator: Emulator, sessions: list[str]) -> set[str]:
    found: set[str] = set()
    for sid in sessions:
        found |= {e.id async for e in emulator.client.events.iter(sid)}
    return found


def assert_each_session_complete(observed: Observed, sessions: list[str], server_events: set[str]) -> None:
    ids = observed.event_ids()
    assert len(ids) == len(set(ids)), "an event twice on the stream"
    assert set(ids) == server_events, "every event the server lists is on the stream"
    grouped = observed.by_session()
    for sid in sessions:
        kinds = [r["kind"] for r in grouped[sid]]
        assert kinds.count("ended") == 1 and kinds[-1] == "ended", (sid, kinds)
        record_ids = [r["id"] for r in grouped[sid]]
        assert len(record_ids) == len(set(record_ids)), (sid, record_ids)


def assert_cursors_never_went_back(observed: Observed) -> None:
    """Each cursor written for a session is at or after the one written before it (stream order), and the
    done-marker comes last, after the session's ``ended``."""
    position = {(r["session_id"], r["cursor"]): i for i, (_, r) in enumerate(observed.records)}
    ended = {r["session_id"]: i for i, (_, r) in enumerate(observed.records) if r["kind"] == "ended"}
    last: dict[str, int] = {}
    for sid, cursor in observed.cursor_writes:
        index = ended.get(sid, -2) + 1 if cursor == "done" else position.get((sid, cursor))
        assert index is not None, f"cursor saved for {sid} that is on no record"
        assert index >= last.get(sid, -1), f"a stale cursor saved for {sid}"
        last[sid] = index


async def test_a_killed_replica_is_replaced_within_the_ttl_and_two_intervals_losing_nothing(world: Any) -> None:
    emulator, relays, observed, channels = world
    sessions = relays.sessions
    await relays.start("a")
    await relays.start("b")
    await wait_until(lambda: len({r["session_id"] for _, r in observed.records}) == SESSIONS, timeout=20,
                     what="every session's first records on the stream")
    held: dict[str, int] = {}

    async def split() -> None:
        held.update(await observed.held())

    await split()
    with anyio.fail_after(15):
        while not (held.get("a") and held.get("b") and held["a"] + held["b"] == SESSIONS):
            await anyio.sleep(0.1)
            await split()
    await emulator.signal_drop(channels)
    await wait_until(lambda: len(observed.event_ids()) >= 2 * SESSIONS, timeout=15, what="first signal drops out")

    relays.signal("a", signal.SIGKILL)
    killed = time.monotonic()
    await emulator.signal_drop(channels)
    before = set(observed.event_ids())
    after_kill = await server_event_ids(emulator, sessions) - before
    await wait_until(lambda: after_kill <= set(observed.event_ids()), timeout=TTL + 10 * INTERVAL + 5,
                     what="the events written after the kill")
    took = max(observed.arrival(after_kill).values()) - killed
    print(f"events written after the kill arrived within {took:.2f}s")
    assert took <= TTL + 2 * INTERVAL, f"the events written after the kill took {took:.2f}s to arrive"

    for channel_id in channels:
        await emulator.client.channels.stop(channel_id)
    await wait_until(lambda: sum(r["kind"] == "ended" for _, r in observed.records) >= SESSIONS, timeout=15,
                     what="every session's ended")
    assert_each_session_complete(observed, sessions, await server_event_ids(emulator, sessions))
    assert_cursors_never_went_back(observed)
    assert "lease acquired" in relays.log("b") and "from=expired holder=a" in relays.log("b")
    await relays.finish_by_themselves(timeout=15)


async def test_a_joining_replica_takes_a_share_without_duplicates_and_a_paused_one_is_fenced(world: Any) -> None:
    emulator, relays, observed, channels = world
    sessions = relays.sessions
    await relays.start("a")
    await relays.start("b")
    held: dict[str, int] = {}

    async def shares(check: Callable[[dict[str, int]], bool], what: str) -> None:
        with anyio.fail_after(15):
            while not check(held):
                await anyio.sleep(0.1)
                held.clear()
                held.update(await observed.held())

    async def all_on_stream(what: str) -> None:
        expected = await server_event_ids(emulator, sessions)
        await wait_until(lambda: expected <= set(observed.event_ids()), timeout=15, what=what)

    async def deliveries() -> float:
        return sum([await relays.delivered(name) for name in relays.procs])

    await shares(lambda h: h.get("a", 0) + h.get("b", 0) == SESSIONS and min(h.values()) > 0, "a and b share")
    await emulator.signal_drop(channels)
    await all_on_stream("the first signal drops")

    await relays.start("c")
    await shares(lambda h: sorted(h.values()) == [6, 7, 7], "a third replica's share")
    await emulator.signal_drop(channels)
    await all_on_stream("the signal drops after the join")
    # The stream would hide a repeat (Nats-Msg-Id); the replicas' own counts would not.
    with anyio.fail_after(15):  # the scrapes catch up with the stream; a repeat would overshoot it for good
        while (sent := await deliveries()) != len(observed.records):
            assert sent < len(observed.records) or math.isnan(sent), "a record delivered twice across the join"
            await anyio.sleep(0.1)

    paused_with = held.get("c", 0)
    relays.signal("c", signal.SIGSTOP)
    await shares(lambda h: h.get("a", 0) + h.get("b", 0) == SESSIONS, "a and b take the paused replica's leases")
    await emulator.signal_drop(channels)
    await all_on_stream("the signal drops while c is paused")
    relays.signal("c", signal.SIGCONT)
    await shares(lambda h: sorted(h.values()) == [6, 7, 7] and h.get("c", 0) > 0, "c rejoins")
    assert "lease lost" in relays.log("c"), "the paused replica noticed it lost its leases"
    await emulator.signal_drop(channels)
    await all_on_stream("the signal drops after c rejoined")

    for channel_id in channels:
        await emulator.client.channels.stop(channel_id)
    await wait_until(lambda: sum(r["kind"] == "ended" for _, r in observed.records) >= SESSIONS, timeout=15,
                     what="every session's ended")
    assert_each_session_complete(observed, sessions, await server_event_ids(emulator, sessions))
    assert_cursors_never_went_back(observed)
    await relays.finish_by_themselves(timeout=15)
    # c was paused between deliveries: on waking it sends nothing before renewing its leases, so nothing goes
    # out twice (one record, had one been in flight at the pause). Counted from each replica's last words.
    repeats = sum(relays.delivered_at_exit(name) for name in relays.procs) - len(observed.records)
    assert 0 <= repeats <= 1, f"{repeats} records delivered twice (c held {paused_with} leases when paused)"
