"""One watcher over N sessions, measured in a process of its own: ``python -m benchmarks._watch_phase < spec``.

A fresh process per watcher, so that its RSS, its GC-tracked objects and its CPU are its own, not a heap an
earlier watcher grew. It reads a ``PhaseSpec`` (JSON) on stdin, runs the watcher against the benchmark emulator
(``benchmarks._emulator_server``, whose control routes flip sessions and count requests), and prints one
``PhaseResult`` (JSON) on stdout.
"""

from __future__ import annotations

import functools
import gc
import logging
import math
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio
import msgspec

from ._floor import floor_watcher
from ._loops import run_on
from ._watchers import Control, raw_watcher, sdk_watcher

__all__ = ["CONTENDERS", "PhaseResult", "PhaseSpec", "rss_bytes"]

#: Who is measured: the SDK's monitor, the one-scheduler floor, the task-per-session raw poller.
CONTENDERS = ("sdk", "floor", "raw")
_STATUS_EVERY = {"lean": 15, "full": 1}
#: Each interval's changes are made in this many slices, evenly spread.
_SLICES = 10


class PhaseSpec(msgspec.Struct, frozen=True):
    url: str
    ids_file: str
    contender: str
    mode: str
    interval: float
    window: int
    change_share: float
    settle_timeout: float
    max_connections: int
    loop: str = "asyncio"
    seed: int = 0


class PhaseResult(msgspec.Struct):
    contender: str
    mode: str
    sessions: int
    interval: float
    settle_timeout: float = 0.0
    #: Seconds from the watcher's start until every session had been reported once (None: not within the time).
    startup: float | None = None
    settled: int = 0
    window_seconds: float = math.nan
    cpu_seconds: float = math.nan
    #: Requests the emulator served over the window, the control routes' own left out.
    requests: int = 0
    server_cpu_share: float = math.nan
    gc_seconds: float = 0.0
    gc_collections: list[int] = msgspec.field(default_factory=lambda: [0, 0, 0])
    rss_before: int = 0
    rss_steady: int = 0
    objects_before: int = 0
    objects_steady: int = 0
    lags: list[float] = msgspec.field(default_factory=list)
    changes: int = 0
    undetected: int = 0
    kinds: dict[str, int] = msgspec.field(default_factory=dict)
    #: The window's requests by what they read (status, events, app events, app sessions, sessions, other).
    reads: dict[str, int] = msgspec.field(default_factory=dict)
    #: Records the SDK logged at INFO or above (retries, backoffs, warnings), and the first few of them.
    log_records: int = 0
    log_sample: list[str] = msgspec.field(default_factory=list)

    @property
    def cpu_share(self) -> float:
        return self.cpu_seconds / self.window_seconds

    @property
    def cpu_per_request(self) -> float:
        return self.cpu_seconds / self.requests if self.requests else math.nan

    @property
    def gc_per_request(self) -> float:
        return self.gc_seconds / self.requests if self.requests else math.nan

    @property
    def requests_per_session_interval(self) -> float:
        return self.requests / self.window_seconds * self.interval / self.sessions

    @property
    def rss_per_session(self) -> float:
        return (self.rss_steady - self.rss_before) / self.sessions if self.rss_steady else math.nan

    @property
    def objects_per_session(self) -> float:
        return (self.objects_steady - self.objects_before) / self.sessions if self.objects_steady else math.nan


def rss_bytes() -> int:
    """This process's resident set size, from ``/proc/self/status`` (0 where there is no /proc)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def watcher_for(spec: PhaseSpec) -> Callable[..., AbstractAsyncContextManager[None]]:
    if spec.contender == "sdk":
        return functools.partial(sdk_watcher, poll=spec.mode)
    if spec.contender == "floor":
        return functools.partial(floor_watcher, poll=spec.mode)
    if spec.contender == "raw" and spec.mode in _STATUS_EVERY:
        return functools.partial(raw_watcher, status_every=_STATUS_EVERY[spec.mode])
    raise ValueError(f"no {spec.contender} watcher for poll={spec.mode}")


class _GcTimer:
    """Wall time spent in the cyclic collector, and collections per generation, while ``on``."""

    def __init__(self) -> None:
        self.on = False
        self.seconds = 0.0
        self.collections = [0, 0, 0]
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if not self.on:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.collections[info["generation"]] += 1


class _LogCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.count = 0
        self.sample: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        if len(self.sample) < 5:
            self.sample.append(f"{record.levelname} {record.getMessage()[:200]}")


async def measure(spec: PhaseSpec, ids: list[str]) -> PhaseResult:
    n, interval = len(ids), spec.interval
    result = PhaseResult(
        contender=spec.contender, mode=spec.mode, sessions=n, interval=interval, settle_timeout=spec.settle_timeout
    )
    rng = random.Random(spec.seed)
    seen: set[str] = set()
    changed_at: dict[str, float] = {}
    kinds: Counter[str] = Counter()
    settled, drained = anyio.Event(), anyio.Event()
    window_over = False

    def note(sid: str, kind: str) -> None:
        now = time.time()
        kinds[kind] += 1
        # The first report after a change is its detection: same machine, same wall clock.
        at = changed_at.pop(sid, None)
        if at is not None:
            result.lags.append(now - at)
        if sid not in seen:
            seen.add(sid)
            if len(seen) >= n:
                result.startup = time.perf_counter() - started
                settled.set()
        if window_over and not changed_at:
            drained.set()

    logs = _LogCounter()
    logger = logging.getLogger("sigma_async")
    logger.addHandler(logs)
    logger.setLevel(logging.INFO)
    gc_timer = _GcTimer()
    gc.callbacks.append(gc_timer)
    control = Control(spec.url)
    watcher = watcher_for(spec)
    gc.collect()
    result.rss_before, result.objects_before = rss_bytes(), len(gc.get_objects())
    started = time.perf_counter()
    try:
        async with watcher(spec.url, ids, interval, note, spec.max_connections):
            # Settle: every session reported once, then one more interval.
            with anyio.move_on_after(spec.settle_timeout):
                await settled.wait()
            result.settled = len(seen)
            await anyio.sleep(interval)

            stats0 = await control.call("GET", "stats")
            wall0, cpu0 = time.perf_counter(), time.process_time()
            gc_timer.on = True
            # Each interval's changes in slices spread over it: changes come at every phase of a poller's beat,
            # so the lag is sampled over the whole interval, not at one phase of it.
            per_interval = max(1, round(n * spec.change_share))
            slices = min(_SLICES, per_interval)
            flips = 0
            for step in range(spec.window * slices):
                quiet = [sid for sid in ids if sid not in changed_at]
                size = per_interval * (step % slices + 1) // slices - per_interval * (step % slices) // slices
                batch = rng.sample(quiet, min(size, len(quiet)))
                at = (await control.call("POST", "flip", {"session_ids": batch}))["at"]
                flips += 1
                changed_at.update(dict.fromkeys(batch, at))
                result.changes += len(batch)
                # Flips on a fixed beat, whatever the control call cost.
                await anyio.sleep(max(0.0, wall0 + (step + 1) * interval / slices - time.perf_counter()))
            cpu1, wall1 = time.process_time(), time.perf_counter()
            gc_timer.on = False
            stats1 = await control.call("GET", "stats")
            result.rss_steady = rss_bytes()

            # Changes made in the last interval still get their chance to be seen.
            window_over = True
            if not changed_at:
                drained.set()
            with anyio.move_on_after(interval * 1.5 + 1.0):
                await drained.wait()
            result.undetected = len(changed_at)
            # Counted last, while the watcher still runs: a full collection would hold up the window's reads.
            gc.collect()
            result.objects_steady = len(gc.get_objects())
    finally:
        await control.aclose()
        gc.callbacks.remove(gc_timer)
        logger.removeHandler(logs)

    result.window_seconds = wall1 - wall0
    result.cpu_seconds = cpu1 - cpu0
    result.gc_seconds, result.gc_collections = gc_timer.seconds, gc_timer.collections
    server_wall = stats1["wall"] - stats0["wall"]
    result.server_cpu_share = (stats1["cpu"] - stats0["cpu"]) / server_wall
    # The flips and the closing stats call went through the same server: they are not the watcher's.
    result.requests = stats1["requests"] - stats0["requests"] - flips - 1
    result.kinds = dict(kinds)
    before = stats0["kinds"]
    reads = {k: v - before.get(k, 0) for k, v in stats1["kinds"].items() if k != "control"}
    result.reads = {k: v for k, v in reads.items() if v}
    result.log_records, result.log_sample = logs.count, logs.sample
    return result


def main() -> int:
    spec = msgspec.json.decode(sys.stdin.buffer.read(), type=PhaseSpec)
    with open(spec.ids_file, "rb") as ids_file:
        ids = msgspec.json.decode(ids_file.read(), type=list[str])
    result = run_on(spec.loop, measure(spec, ids))
    sys.stdout.buffer.write(msgspec.json.encode(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
