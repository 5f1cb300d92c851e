"""Watch scale: N sessions in one ``client.monitor`` per poll mode, on one loop: requests per session per interval,
client CPU share, RSS per session, detection lag; the hand-written raw poller as the floor."""

from __future__ import annotations

import functools
import gc
import math
import random
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

import anyio

from ._loops import run_on
from ._report import NOT_MET, Section, status_for
from ._server import ServerProcess, emulator_server
from ._stats import fmt_bytes, fmt_ratio, fmt_seconds, percentile
from ._watchers import Control, raw_watcher, sdk_watcher

#: The SDK's poll modes measured, in this order: the first runs on a fresh heap, so its RSS figure is clean.
MODES = ("feed", "lean", "full")
#: Targets per mode: (largest requests per session per interval, largest CPU share of a core, at sessions).
MODE_TARGETS: dict[str, tuple[float, float, int]] = {
    "lean": (1.1, 0.45, 5000),
    "feed": (0.1, 0.15, 10_000),
}

__all__ = ["WatchConfig", "WatchResult", "run"]

#: Targets at a 2 s interval: the full mode's CPU share at 5,000 sessions (turn 1), and RSS per session.
MAX_CPU_SHARE = 0.60
MAX_RSS_PER_SESSION = 16 * 1024
LAG_MARGIN = 0.5
#: Above this share of a core the emulator, not the client, may be what sets the pace.
SERVER_SATURATED = 0.90
#: Below this share of the expected request rate, the watcher has fallen behind its interval.
KEEPS_UP = 0.90
#: Under this many sessions the monitor's fixed costs swamp the per-session RSS figure.
RSS_TARGET_FROM = 1000


@dataclass(frozen=True)
class WatchConfig:
    sizes: tuple[int, ...]
    interval: float = 2.0
    #: Intervals of steady state measured (CPU, RSS, lag); one flip of ``change_share`` of sessions per interval.
    window: int = 5
    change_share: float = 0.05
    loop: str = "asyncio"
    #: The client's connection pool; the SDK's default unless told otherwise.
    max_connections: int = 100
    #: Longest wait for every session's first poll; past it the run measures what it has.
    settle_timeout: float = 60.0
    modes: tuple[str, ...] = MODES


@dataclass
class WatchResult:
    sessions: int
    interval: float
    mode: str = "raw"
    window_seconds: float = math.nan
    cpu_share: float = math.nan
    rss_before: int = 0
    rss_steady: int = 0
    lags: list[float] = field(default_factory=list)
    changes: int = 0
    undetected: int = 0
    server_cpu_share: float = math.nan
    requests_per_second: float = math.nan
    expected_requests_per_second: float = math.nan
    settled: int = 0
    kinds: dict[str, int] = field(default_factory=dict)

    @property
    def requests_per_session_interval(self) -> float:
        return self.requests_per_second * self.interval / self.sessions

    @property
    def rss_per_session(self) -> float:
        return (self.rss_steady - self.rss_before) / self.sessions if self.rss_steady else math.nan

    def summary(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "lags"}
        out |= {
            "rss_per_session": self.rss_per_session,
            "lag_p50": percentile(self.lags, 50),
            "lag_p99": percentile(self.lags, 99),
            "lag_max": max(self.lags, default=math.nan),
        }
        return out


def run(config: WatchConfig) -> Section:
    """One emulator process per size, so no size inherits the sessions of the one before."""
    results = []
    for n in config.sizes:
        with emulator_server() as server:
            results.append(run_on(config.loop, _watch(n, config, server)))
    return _section(config, results)


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


async def _watch(n: int, config: WatchConfig, server: ServerProcess) -> tuple[list[WatchResult], WatchResult]:
    """The SDK's monitor in each mode, then the raw poller, over the same N sessions of one emulator."""
    control = Control(server.url)
    try:
        ids: list[str] = (await control.call("POST", "setup", {"sessions": n}))["session_ids"]
        # The SDK first: RSS is measured from a fresh heap, not one the other watcher has already grown.
        ours = []
        for mode in config.modes:
            watcher = functools.partial(sdk_watcher, poll=mode)
            ours.append(await _phase(watcher, n, ids, config, control, server.url, mode))
        floor = await _phase(raw_watcher, n, ids, config, control, server.url, "raw")
        for later in [*ours[1:], floor]:
            later.rss_steady = 0  # measured on a heap an earlier phase grew: not a per-session figure
    finally:
        await control.aclose()
    return ours, floor


async def _phase(
    watcher: Callable[..., AbstractAsyncContextManager[None]],
    n: int,
    ids: list[str],
    config: WatchConfig,
    control: Control,
    url: str,
    mode: str,
) -> WatchResult:
    interval = config.interval
    result = WatchResult(sessions=n, interval=interval, mode=mode, expected_requests_per_second=2 * n / interval)
    rng = random.Random(n)
    seen: set[str] = set()
    changed_at: dict[str, float] = {}
    kinds: Counter[str] = Counter()
    settled, drained = anyio.Event(), anyio.Event()
    window_over = False

    def note(sid: str, kind: str) -> None:
        now = time.time()
        seen.add(sid)
        kinds[kind] += 1
        # The first report after a change is its detection: same machine, same wall clock.
        at = changed_at.pop(sid, None)
        if at is not None:
            result.lags.append(now - at)
        if len(seen) >= n:
            settled.set()
        if window_over and not changed_at:
            drained.set()

    gc.collect()
    result.rss_before = rss_bytes()
    async with watcher(url, ids, interval, note, config.max_connections):
        # Settle: every session polled once (first polls are spread over one interval), then one more interval.
        with anyio.move_on_after(config.settle_timeout):
            await settled.wait()
        result.settled = len(seen)
        await anyio.sleep(interval)

        stats0, wall0, cpu0 = await control.call("GET", "stats"), time.perf_counter(), time.process_time()
        per_flip = max(1, round(n * config.change_share))
        for step in range(config.window):
            quiet = [sid for sid in ids if sid not in changed_at]
            batch = rng.sample(quiet, min(per_flip, len(quiet)))
            at = (await control.call("POST", "flip", {"session_ids": batch}))["at"]
            changed_at.update(dict.fromkeys(batch, at))
            result.changes += len(batch)
            # Flips on a fixed beat, whatever the control call cost.
            await anyio.sleep(max(0.0, wall0 + (step + 1) * interval - time.perf_counter()))
        cpu1, wall1 = time.process_time(), time.perf_counter()
        stats1 = await control.call("GET", "stats")
        result.rss_steady = rss_bytes()

        # Changes made in the last interval still get their chance to be seen.
        window_over = True
        if not changed_at:
            drained.set()
        with anyio.move_on_after(interval * 1.5 + 1.0):
            await drained.wait()
        result.undetected = len(changed_at)

    window = wall1 - wall0
    result.window_seconds = window
    result.cpu_share = (cpu1 - cpu0) / window
    server_wall = stats1["wall"] - stats0["wall"]
    result.server_cpu_share = (stats1["cpu"] - stats0["cpu"]) / server_wall
    result.requests_per_second = (stats1["requests"] - stats0["requests"]) / server_wall
    result.kinds = dict(kinds)
    return result


def _section(config: WatchConfig, results: list[tuple[list[WatchResult], WatchResult]]) -> Section:
    sec = Section(
        "watch",
        f"Watch scale: client.monitor per poll mode at a {config.interval:g} s interval, "
        f"{config.change_share:.0%} of sessions changing per interval, pool of {config.max_connections} "
        "connections (emulator in another process)",
    )
    lag_limit = config.interval + LAG_MARGIN
    for modes, raw in results:
        n = raw.sessions
        label = f"N={n:,}"
        sec.add(
            f"{label} raw poller (floor)", f"{raw.requests_per_session_interval:.2f} req/session/interval",
            f"CPU {raw.cpu_share:.1%}, lag {_lag(raw)}",
        )
        for ours in modes:
            _mode_rows(sec, label, ours, raw, lag_limit)
        for r in [*modes, raw]:
            name = r.mode
            if r.server_cpu_share >= SERVER_SATURATED:
                sec.notes.append(
                    f"{label} ({name}): the emulator used {r.server_cpu_share:.0%} of its core, so it, not the "
                    "client, may have set the pace."
                )
            if r.settled < r.sessions:
                sec.notes.append(f"{label} ({name}): only {r.settled:,} sessions polled within the settle time.")
            if r.undetected:
                sec.notes.append(f"{label} ({name}): {r.undetected} of {r.changes} changes not seen in time.")
    sec.data = {
        "runs": [{"sdk": {m.mode: m.summary() for m in modes}, "raw": raw.summary()} for modes, raw in results],
        "lags": {
            str(raw.sessions): {**{m.mode: m.lags for m in modes}, "raw": raw.lags} for modes, raw in results
        },
    }
    sec.notes += [
        f"Per size: the SDK's monitor in each mode ({', '.join(config.modes)}), then a hand-written raw aiohttp "
        f"poller (the floor: status + newest 10 events per session every interval, URLs built once, msgspec), "
        f"each settled and then measured over {config.window} intervals of steady state, on the same emulator.",
        "Requests per session per interval are the emulator's own count over the window. CPU share = "
        "process_time / wall of the client process over the window. RSS per session = VmRSS growth from before "
        "the monitor started to the end of the window, divided by N (the first mode only: later ones run on a "
        "heap the first has grown).",
        "Lag = client time.time() when the first transition of a changed session is yielded, minus the server's "
        "time.time() when it made the change (an event and a status, as a real signal flip does).",
        "A mode that saved requests by falling behind shows it in its lag and in changes not seen in time: its "
        "targets are then marked not met.",
    ]
    return sec


def _mode_rows(sec: Section, label: str, ours: WatchResult, raw: WatchResult, lag_limit: float) -> None:
    mode = ours.mode
    rate_target, cpu_target, at_size = MODE_TARGETS.get(mode, (math.inf, MAX_CPU_SHARE, 5000))
    p99 = percentile(ours.lags, 99) if not ours.undetected else math.inf
    in_time = p99 < lag_limit
    rate = ours.requests_per_session_interval
    sec.add(
        f"{label} {mode}: requests per session per interval", f"{rate:.3f}",
        f"raw poller {raw.requests_per_session_interval:.2f}", fmt_ratio(rate / raw.requests_per_session_interval),
        f"<= {rate_target:g}" if rate_target < math.inf else "",
        (status_for(rate, below=rate_target + 1e-9) if in_time else f"{NOT_MET} (behind)")
        if rate_target < math.inf else "",
    )
    targeted = ours.sessions >= at_size
    sec.add(
        f"{label} {mode}: client CPU share", f"{ours.cpu_share:.1%} of a core", f"raw poller {raw.cpu_share:.1%}",
        fmt_ratio(ours.cpu_share / raw.cpu_share), f"< {cpu_target:.0%}" if targeted else "",
        (status_for(ours.cpu_share, below=cpu_target) if in_time else f"{NOT_MET} (behind)") if targeted else "",
    )
    sec.add(
        f"{label} {mode}: detection lag p50 / p99", _lag(ours), f"raw poller {_lag(raw)}",
        fmt_ratio(percentile(ours.lags, 99) / percentile(raw.lags, 99)), f"p99 < {lag_limit:g} s",
        status_for(p99, below=lag_limit),
    )
    if ours.rss_steady:
        rss_target = ours.sessions >= RSS_TARGET_FROM
        sec.add(
            f"{label} {mode}: RSS per session", fmt_bytes(ours.rss_per_session),
            f"Δ {fmt_bytes(ours.rss_steady - ours.rss_before)} over {fmt_bytes(ours.rss_before)}", "",
            f"< {fmt_bytes(MAX_RSS_PER_SESSION)}" if rss_target else "(target from N=1,000)",
            status_for(ours.rss_per_session, below=MAX_RSS_PER_SESSION) if rss_target else "",
        )
    sec.add(f"{label} {mode}: emulator CPU share", f"{ours.server_cpu_share:.1%} of a core")


def _lag(r: WatchResult) -> str:
    return f"{fmt_seconds(percentile(r.lags, 50))} / {fmt_seconds(percentile(r.lags, 99))}"
