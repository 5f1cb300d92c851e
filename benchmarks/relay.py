"""Relay: records per second through each sink, CPU per record, and the CPU relaying adds over watching.

Two measurements:
- **Through each sink**: prepared transitions of many sessions fed to the relay runner as fast as it takes them
  (a stand-in monitor, no polling), so the figure is the runner + sink + cursor store alone. The webhook
  receiver and nats-server run in other processes, so their CPU is not counted.
- **Overhead**: the same N live sessions of an emulator in another process, watched by ``client.monitor`` and
  then relayed with the file sink and the file cursor store, sessions flipping state every interval; the
  relay's CPU share over the monitor's. Target: under 10 % more.

Also a webhook receiver for the first part: ``python -m benchmarks.relay --port 0`` answers every POST with 200.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, cast

import anyio

from sigma_async import SigmaClient
from sigma_async.models import Event
from sigma_async.relay import (
    CursorStore,
    FileCursorStore,
    FileSink,
    MemoryCursorStore,
    NatsCursorStore,
    NatsSink,
    Relay,
    Sink,
    WebhookSink,
)
from sigma_async.testing import DEFAULT_APP_ID, DEFAULT_SECRET_KEY, DEFAULT_USERNAME, NatsServer
from sigma_async.transitions import Interrupted, Restored, Transition

from ._loops import run_on
from ._report import Section, status_for
from ._server import ServerProcess, emulator_server
from ._watchers import Control

__all__ = ["RelayBenchConfig", "main", "run"]

#: The relay may use at most this much more CPU than watching the same sessions.
MAX_OVERHEAD = 0.10
SINKS = ("file", "file + file store", "webhook", "nats", "nats + KV store")


@dataclass(frozen=True)
class RelayBenchConfig:
    #: Sessions and records per session pushed through each sink.
    sessions: int = 100
    records_per_session: int = 50
    #: Live sessions of the overhead run, their poll interval, and intervals measured per phase.
    watched: int = 300
    interval: float = 1.0
    window: int = 5
    #: As in the watch section: 5 % of sessions change state per interval.
    change_share: float = 0.05
    rounds: int = 3
    loop: str = "asyncio"


@dataclass
class Throughput:
    sink: str
    records: int = 0
    seconds: float = math.nan
    cpu_seconds: float = math.nan

    @property
    def per_second(self) -> float:
        return self.records / self.seconds if self.seconds else math.nan

    @property
    def cpu_per_record(self) -> float:
        return self.cpu_seconds / self.records if self.records else math.nan


@dataclass
class Overhead:
    watch_cpu: list[float] = field(default_factory=list)  # CPU share of a core, one per round
    relay_cpu: list[float] = field(default_factory=list)
    records: list[int] = field(default_factory=list)  # records relayed in each round's window

    @property
    def ratio(self) -> float:
        # Per-round ratios, then their median: rounds interleave, so machine noise hits both phases alike.
        ratios = [r / w for w, r in zip(self.watch_cpu, self.relay_cpu, strict=True) if w > 0]
        return statistics.median(ratios) if ratios else math.nan


def run(config: RelayBenchConfig) -> Section:
    results = [run_on(config.loop, _through(sink, config)) for sink in SINKS]
    with emulator_server() as server:
        overhead = run_on(config.loop, _overhead(config, server))
    return _section(config, results, overhead)


# -- through each sink ----------------------------------------------------------------------------------------


class _Replay:
    """Stands in for ``client.monitor``: yields prepared transitions as fast as the relay takes them."""

    def __init__(self, transitions: list[Transition]) -> None:
        self._items = iter(transitions)

    def add_session(self, session_id: str, *, since: str | None = None, channel_id: str | None = None) -> None:
        pass

    def add_channel(self, channel_id: str) -> None:
        pass

    async def __aenter__(self) -> _Replay:
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass

    def __aiter__(self) -> _Replay:
        return self

    async def __anext__(self) -> Transition:
        await anyio.lowlevel.checkpoint()
        try:
            return next(self._items)
        except StopIteration:
            raise StopAsyncIteration from None


class _ReplayClient:
    def __init__(self, transitions: list[Transition]) -> None:
        self.transitions = transitions

    def monitor(self, **kw: Any) -> _Replay:
        return _Replay(self.transitions)


def prepared(sessions: int, per_session: int) -> list[Transition]:
    """Signal flaps of every session, interleaved as a monitor would yield them, with cursors of a real size."""
    at = datetime.now(timezone.utc)
    out: list[Transition] = []
    for i in range(per_session):
        for s in range(sessions):
            sid = f"{s:08x}-bench-relay-session"
            cls = Interrupted if i % 2 == 0 else Restored
            event = Event(id=f"{s:04x}{i:08x}-event", action=cls.kind, created_at=at, session_id=sid, actor="system")
            out.append(cls(session_id=sid, channel_id="bench-channel", source="event", event=event, at=at,
                           previous="live" if i == 0 else ("restored" if i % 2 == 0 else "interrupted"),
                           cursor="c" * 180 + f"{i:08d}", id=f"{sid}/event/{event.id}"))
    return out


async def _through(name: str, config: RelayBenchConfig) -> Throughput:
    transitions = prepared(config.sessions, config.records_per_session)
    result = Throughput(name, records=len(transitions))
    async with _sink_and_store(name) as (sink, store):
        relay = Relay(cast(Any, _ReplayClient(transitions)), sink, store,
                      session_ids=sorted({t.session_id for t in transitions}))
        wall, cpu = time.perf_counter(), time.process_time()
        await relay.run()
        result.seconds, result.cpu_seconds = time.perf_counter() - wall, time.process_time() - cpu
    if relay.stats.delivered != len(transitions):
        raise RuntimeError(f"{name}: {relay.stats.delivered} of {len(transitions)} delivered")
    return result


@asynccontextmanager
async def _sink_and_store(name: str) -> AsyncIterator[tuple[Sink, CursorStore]]:
    """The sink and store of one row, with whatever server they need running in its own process."""
    async with AsyncExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sigma-relay-bench-")))
        sink: Sink
        store: CursorStore = MemoryCursorStore()
        if name.startswith("file"):
            sink = FileSink(tmp / "out.jsonl")
            if "store" in name:
                store = FileCursorStore(tmp / "cursors.json")
        elif name == "webhook":
            receiver = stack.enter_context(ServerProcess("benchmarks.relay"))
            sink = WebhookSink(receiver.url + "/hook", secret="bench-secret")
        else:
            server = await stack.enter_async_context(NatsServer(store_dir=str(tmp / "nats")))
            sink = await NatsSink.open(f"{server.url}/SIGMA")
            if "store" in name:
                store = await NatsCursorStore.open(f"{server.url}/relay-cursors")
        yield sink, store  # the relay closes both


# -- overhead over watching -----------------------------------------------------------------------------------


async def _overhead(config: RelayBenchConfig, server: ServerProcess) -> Overhead:
    control = Control(server.url)
    result = Overhead()
    try:
        ids: list[str] = (await control.call("POST", "setup", {"sessions": config.watched}))["session_ids"]
        rng = random.Random(7)
        for round_ in range(config.rounds):
            # Which phase goes first alternates, so that drift over a round (the emulator's growing history, the
            # machine's other load) does not always land on the same side.
            for relay in (False, True) if round_ % 2 == 0 else (True, False):
                share, records = await _phase(config, server.url, ids, control, rng, relay=relay)
                if relay:
                    result.relay_cpu.append(share)
                    result.records.append(records)
                else:
                    result.watch_cpu.append(share)
    finally:
        await control.aclose()
    return result


class _Count:
    """The observer of the relay phase (and the consumer of the watch phase): sessions seen, records out."""

    def __init__(self, sessions: int) -> None:
        self.sessions: set[str] = set()
        self.records = 0
        self.expected = sessions
        self.all_seen = anyio.Event()

    def delivered(self, transition: Transition, lag: float) -> None:
        self.sessions.add(transition.session_id)
        self.records += 1
        if len(self.sessions) >= self.expected:
            self.all_seen.set()

    def rejected(self, transition: Transition, detail: str) -> None:
        pass

    def retried(self, transition: Transition, error: BaseException) -> None:
        pass


async def _phase(
    config: RelayBenchConfig, url: str, ids: list[str], control: Control, rng: random.Random, *, relay: bool
) -> tuple[float, int]:
    """One phase: settle (every session seen once), then ``window`` intervals of flips; CPU share and records."""
    count = _Count(len(ids))
    client = SigmaClient(username=DEFAULT_USERNAME, secret_key=DEFAULT_SECRET_KEY, app_id=DEFAULT_APP_ID,
                         base_url=url)
    with tempfile.TemporaryDirectory(prefix="sigma-relay-bench-") as tmp:
        async with client, anyio.create_task_group() as tg:
            if relay:
                runner = Relay(client, FileSink(Path(tmp) / "out.jsonl"), FileCursorStore(Path(tmp) / "c.json"),
                               session_ids=ids, interval=config.interval, observer=count)
                await tg.start(runner.run)
                stop = runner.stop
            else:
                monitor = client.monitor(session_ids=ids, interval=config.interval)

                async def consume() -> None:
                    async with monitor:
                        async for transition in monitor:
                            count.delivered(transition, 0.0)

                tg.start_soon(consume)
                stop = tg.cancel_scope.cancel
            with anyio.move_on_after(60):
                await count.all_seen.wait()
            await anyio.sleep(config.interval)  # the first polls' burst over
            records0, wall0, cpu0 = count.records, time.perf_counter(), time.process_time()
            for step in range(config.window):
                batch = rng.sample(ids, max(1, round(len(ids) * config.change_share)))
                await control.call("POST", "flip", {"session_ids": batch})
                await anyio.sleep(max(0.0, wall0 + (step + 1) * config.interval - time.perf_counter()))
            share = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
            records = count.records - records0
            stop()
    return share, records


def _section(config: RelayBenchConfig, results: list[Throughput], overhead: Overhead) -> Section:
    sec = Section(
        "relay",
        f"Relay: {config.sessions} sessions x {config.records_per_session} records through each sink (runner, sink "
        f"and store only); then {config.watched} live sessions at a {config.interval:g} s interval, "
        f"{config.change_share:.0%} flipping per interval, relayed to a file vs only watched",
    )
    for r in results:
        sec.add(f"{r.sink}: records per second", f"{r.per_second:,.0f}/s",
                f"CPU {r.cpu_per_record * 1e6:,.0f} µs per record")
    watch_cpu = statistics.median(overhead.watch_cpu) if overhead.watch_cpu else math.nan
    relay_cpu = statistics.median(overhead.relay_cpu) if overhead.relay_cpu else math.nan
    ratio = overhead.ratio
    sec.add(
        "relay to a file vs watching: CPU", f"{relay_cpu:.1%} of a core", f"monitor alone {watch_cpu:.1%}",
        f"{ratio:.2f}x", f"< {1 + MAX_OVERHEAD:.2f}x", status_for(ratio, below=1 + MAX_OVERHEAD),
    )
    per_round = statistics.median(overhead.records) if overhead.records else 0
    sec.notes.append(
        f"Overhead rounds interleave watch and relay phases ({config.rounds} each, alternating which goes first); "
        "the relay's CPU includes the "
        f"cursor store's fsync thread; about {per_round:.0f} records relayed per {config.window}-interval window."
    )
    sec.data = {
        "throughput": [r.__dict__ | {"per_second": r.per_second, "cpu_per_record": r.cpu_per_record}
                       for r in results],
        "overhead": overhead.__dict__ | {"ratio": ratio},
    }
    return sec


# -- the webhook receiver ------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Serve a webhook receiver that accepts every POST, printing its URL first (for ``ServerProcess``)."""
    from aiohttp import web

    parser = argparse.ArgumentParser(prog="python -m benchmarks.relay")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)

    async def accept(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="ok")

    async def serve() -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", accept)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, args.host, args.port)
        await site.start()
        print(f"listening on http://{args.host}:{runner.addresses[0][1]}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    with suppress(KeyboardInterrupt):
        asyncio.run(serve())
    return 0


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sys.exit(main())
