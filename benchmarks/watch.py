"""Watch scale: ``client.monitor`` over N sessions per poll mode, against the floor (a minimal poller with one
scheduler, sending the same requests) and a raw poller with a task per session, each in a process of its own:
requests per session per interval, client CPU per request, GC, lag, RSS and GC-tracked objects per watched
session, and the time until every session is watched."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from ._loops import run_on
from ._report import NOT_MET, Section, status_for
from ._server import ServerProcess, emulator_server
from ._stats import fmt_bytes, fmt_ratio, fmt_seconds, median, paired_ratio, percentile, rotate
from ._watch_phase import CONTENDERS, PhaseResult, PhaseSpec
from ._watchers import Control

__all__ = ["LARGE_ROWS", "MODES", "WatchConfig", "WatchRow", "parse_rows", "run"]

#: The SDK's poll modes, in the order rows of one size are measured.
MODES = ("lean", "full", "feed")
#: Opt-in rows (``--large``): the feed at the sizes it exists for, and against a slow server.
LARGE_ROWS_SPEC = "feed:30000,feed:100000,feed:30000@0.2"

#: Targets per mode: (most requests per session per interval, most CPU share of a core, from this many sessions).
MODE_TARGETS: dict[str, tuple[float, float, int]] = {
    "lean": (1.1, 0.45, 5000),
    "full": (math.inf, 0.60, 5000),
    "feed": (0.1, 0.15, 10_000),
}
#: Lean at this size or more: CPU per request at most this multiple of the floor's in the same run.
LEAN_FLOOR_RATIO, LEAN_FLOOR_FROM = 1.25, 5000
#: Feed at this size or more: at most half a core, 4 KiB RSS per watched session.
FEED_LARGE_FROM, FEED_LARGE_CPU, FEED_LARGE_RSS = 100_000, 0.50, 4 * 1024
#: Every session watched within this long, for the feed from 30,000 sessions (and for any row against a slow
#: server).
STARTUP_LIMIT, STARTUP_FROM = 60.0, 30_000
MAX_RSS_PER_SESSION = 16 * 1024
RSS_TARGET_FROM = 1000
LAG_MARGIN = 0.5
#: Above this share of a core the emulator, not the client, may be what sets the pace.
SERVER_SATURATED = 0.90


@dataclass(frozen=True)
class WatchRow:
    """One row: a poll mode at N sessions, against a server that holds each answer ``latency`` seconds."""

    mode: str
    sessions: int
    latency: float = 0.0

    @property
    def label(self) -> str:
        slow = f", {self.latency * 1000:g} ms server" if self.latency else ""
        return f"{self.mode} N={self.sessions:,}{slow}"

    @property
    def contenders(self) -> tuple[str, ...]:
        # No task-per-session poller for the feed: it is one listing for every session.
        return ("sdk", "floor") if self.mode == "feed" else CONTENDERS


def parse_rows(text: str) -> tuple[WatchRow, ...]:
    """``lean:5000,feed:30000@0.2`` -> rows; raises ``ValueError`` naming the part it cannot read."""
    rows = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            mode, _, rest = part.partition(":")
            size, _, latency = rest.partition("@")
            row = WatchRow(mode, int(size.replace("_", "")), float(latency) if latency else 0.0)
        except ValueError:
            raise ValueError(f"expected MODE:SESSIONS[@LATENCY], got {part!r}") from None
        if row.mode not in MODES or row.sessions < 1 or not 0 <= row.latency < 60:
            raise ValueError(f"expected MODE:SESSIONS[@LATENCY] with MODE one of {', '.join(MODES)}, got {part!r}")
        rows.append(row)
    if not rows:
        raise ValueError("no rows")
    return tuple(rows)


LARGE_ROWS = parse_rows(LARGE_ROWS_SPEC)


@dataclass(frozen=True)
class WatchConfig:
    rows: tuple[WatchRow, ...]
    interval: float = 2.0
    #: Intervals of steady state measured; ``change_share`` of the sessions flipped once per interval.
    window: int = 5
    change_share: float = 0.05
    loop: str = "asyncio"
    #: The client's connection pool; the SDK's default unless told otherwise.
    max_connections: int = 100
    #: Longest wait for every session's first report; past it the run measures what it has.
    settle_timeout: float = 60.0
    #: Each row's contenders this many times, in rotated order: figures are medians, ratios paired.
    rounds: int = 1


@dataclass
class RowResult:
    row: WatchRow
    setup_seconds: float = math.nan
    rounds: list[dict[str, PhaseResult]] = field(default_factory=list)

    def of(self, contender: str) -> list[PhaseResult]:
        return [r[contender] for r in self.rounds if contender in r]


def run(config: WatchConfig, progress: Callable[[str], None] = lambda _: None) -> Section:
    """One emulator process per row, so that no row inherits the sessions or the events of the one before."""
    results = []
    for row in config.rows:
        with emulator_server(latency=row.latency) as server, tempfile.TemporaryDirectory() as tmp:
            result = RowResult(row)
            ids, result.setup_seconds = run_on("asyncio", _setup(server, row.sessions))
            ids_file = os.path.join(tmp, "ids.json")
            with open(ids_file, "wb") as out:
                out.write(msgspec.json.encode(ids))
            for round_no in range(config.rounds):
                measured: dict[str, PhaseResult] = {}
                for contender in rotate(row.contenders, round_no):
                    progress(f"  watch {row.label}: {contender}, round {round_no + 1} of {config.rounds}")
                    measured[contender] = _phase(config, row, contender, server.url, ids_file, round_no)
                result.rounds.append(measured)
            results.append(result)
    return _section(config, results)


async def _setup(server: ServerProcess, n: int) -> tuple[list[str], float]:
    control = Control(server.url)
    try:
        started = time.perf_counter()
        ids: list[str] = (await control.call("POST", "setup", {"sessions": n}))["session_ids"]
        return ids, time.perf_counter() - started
    finally:
        await control.aclose()


def _phase(config: WatchConfig, row: WatchRow, contender: str, url: str, ids_file: str, round_no: int) -> PhaseResult:
    settle = config.settle_timeout if row.sessions < STARTUP_FROM and not row.latency else 3 * config.settle_timeout
    spec = PhaseSpec(
        url=url, ids_file=ids_file, contender=contender, mode=row.mode, interval=config.interval,
        window=config.window, change_share=config.change_share, settle_timeout=settle,
        max_connections=config.max_connections, loop=config.loop, seed=row.sessions + round_no,
    )  # fmt: skip
    cwd = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    budget = settle + (config.window + 8) * config.interval + 120
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks._watch_phase"], input=msgspec.json.encode(spec), capture_output=True,
        cwd=cwd, timeout=budget, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"watch {row.label} ({contender}) failed: {done.stderr.decode()[-2000:]}")
    return msgspec.json.decode(done.stdout, type=PhaseResult)


# -- the table ---------------------------------------------------------------------------------------------------


def _section(config: WatchConfig, results: list[RowResult]) -> Section:
    sec = Section(
        "watch",
        f"Watch scale: client.monitor per poll mode at a {config.interval:g} s interval, "
        f"{config.change_share:.0%} of sessions changing per interval, pool of {config.max_connections} "
        f"connections, each watcher in its own process, {config.rounds} round(s) (emulator in another process)",
    )
    lag_limit = config.interval + LAG_MARGIN
    for result in results:
        _rows(sec, result, lag_limit)
    sec.data = {
        "rows": [
            {
                "mode": r.row.mode, "sessions": r.row.sessions, "latency": r.row.latency,
                "setup_seconds": r.setup_seconds,
                "rounds": [{c: _summary(p) for c, p in measured.items()} for measured in r.rounds],
            }
            for r in results
        ],
    }  # fmt: skip
    sec.notes += [
        "Contenders: sdk = client.monitor(session_ids=..., poll=MODE); floor = benchmarks/_floor.py, a minimal "
        "poller with one scheduler (a heap of due times, each due read started as a task) sending the requests the "
        "mode sends (lean: newest events every interval, status on the first read and every 15th; full: both every "
        "interval; feed: the app-wide sessions listing once, then the app-wide events listing in pages of 1,000 "
        "back to the last pass, every interval, no per-session reads); raw = a task per session, the same requests "
        "as the floor in lean and full.",
        "Each contender runs in a fresh process (python -m benchmarks._watch_phase) against the same emulator: "
        "started, settled (every session reported once, then one interval), then measured over "
        f"{config.window} intervals. Rounds rotate the order; figures are medians over rounds, ratios medians of "
        "per-round ratios.",
        "Requests: the emulator's own count over the window (control calls left out). CPU per request = client "
        "process_time over the window / those requests; share = process_time / wall. Cyclic GC = wall time inside "
        "gc callbacks (start to stop) over the window.",
        "RSS per watched session = VmRSS at the end of the window minus VmRSS before the watcher started, / N. "
        "GC-tracked objects per watched session = len(gc.get_objects()) after gc.collect(), with the watcher still "
        "running after the window, minus the same count before it started, / N.",
        "Startup = from the watcher's start to the moment every session had been reported once (the SDK: its "
        "first transition; the floor and raw: their first read of it). Lag = client time.time() at the first "
        "report after a change minus the server's time.time() when it made the change (an event and a status). "
        "Each interval's changes are made in 10 slices spread evenly over it, so that they fall at every phase of "
        "a poller's beat.",
    ]
    return sec


def _rows(sec: Section, result: RowResult, lag_limit: float) -> None:
    row = result.row
    label, n, mode = row.label, row.sessions, row.mode
    ours, floor, raw = result.of("sdk"), result.of("floor"), result.of("raw")
    if not ours:
        return
    rate_target, share_target, share_from = MODE_TARGETS[mode]
    big_feed = mode == "feed" and n >= FEED_LARGE_FROM
    missed = median([r.undetected for r in ours])
    p99 = median([percentile(r.lags, 99) for r in ours])
    behind = missed > 0 or not p99 < lag_limit

    def others(fig: Callable[[PhaseResult], float], fmt: Callable[[float], str]) -> str:
        return ", ".join(f"{name} {fmt(median([fig(r) for r in rs]))}" for name, rs in (("floor", floor), ("raw", raw))
                         if rs)  # fmt: skip

    def fig(rs: list[PhaseResult], f: Callable[[PhaseResult], float]) -> float:
        return median([f(r) for r in rs])

    def vs_floor(f: Callable[[PhaseResult], float]) -> float:
        return paired_ratio([f(r) for r in ours], [f(r) for r in floor]) if floor else math.nan

    rate = fig(ours, lambda r: r.requests_per_session_interval)
    # Fewer requests, or less CPU, bought by falling behind is not a target met.
    late = " (behind)" if behind else ""
    sec.add(
        f"{label}: requests per session per interval", _fmt_rate(rate) + late,
        others(lambda r: r.requests_per_session_interval, _fmt_rate),
        fmt_ratio(vs_floor(lambda r: r.requests_per_session_interval)),
        f"<= {rate_target:g}" if rate_target < math.inf else "",
        (status_for(rate, below=rate_target + 1e-9) if not behind else NOT_MET) if rate_target < math.inf else "",
    )  # fmt: skip
    cpu_ratio = vs_floor(lambda r: r.cpu_per_request)
    floor_target = mode == "lean" and n >= LEAN_FLOOR_FROM and floor
    sec.add(
        f"{label}: client CPU per request", fmt_seconds(fig(ours, lambda r: r.cpu_per_request)),
        others(lambda r: r.cpu_per_request, fmt_seconds), fmt_ratio(cpu_ratio),
        f"<= {LEAN_FLOOR_RATIO:g}x floor" if floor_target else "",
        status_for(cpu_ratio, below=LEAN_FLOOR_RATIO + 1e-9) if floor_target else "",
    )  # fmt: skip
    share = fig(ours, lambda r: r.cpu_share)
    share_target = FEED_LARGE_CPU if big_feed else share_target
    targeted = n >= share_from
    sec.add(
        f"{label}: client CPU share", f"{share:.1%} of a core{late}",
        others(lambda r: r.cpu_share, lambda v: f"{v:.1%}"), fmt_ratio(vs_floor(lambda r: r.cpu_share)),
        f"< {share_target:.0%}" if targeted else "",
        (status_for(share, below=share_target) if not behind else NOT_MET) if targeted else "",
    )  # fmt: skip
    collections = fig(ours, lambda r: sum(r.gc_collections))
    sec.add(
        f"{label}: of which cyclic GC, per request",
        f"{fmt_seconds(fig(ours, lambda r: r.gc_per_request))} ({collections:.0f} collections)",
        others(lambda r: r.gc_per_request, fmt_seconds), fmt_ratio(vs_floor(lambda r: r.gc_per_request)),
    )  # fmt: skip
    sec.add(
        f"{label}: detection lag p50 / p99", _lag(ours),
        ", ".join(f"{name} {_lag(rs)}" for name, rs in (("floor", floor), ("raw", raw)) if rs),
        fmt_ratio(vs_floor(lambda r: percentile(r.lags, 99))), f"p99 < {lag_limit:g} s",
        status_for(p99, below=lag_limit),
    )  # fmt: skip
    changes = fig(ours, lambda r: r.changes)
    sec.add(
        f"{label}: changes reported", f"{changes - missed:,.0f} of {changes:,.0f}",
        others(lambda r: r.changes - r.undetected, lambda v: f"{v:,.0f}"), "", "all",
        status_for(missed, below=0.5),
    )  # fmt: skip
    rss = fig(ours, lambda r: r.rss_per_session)
    rss_target = FEED_LARGE_RSS if big_feed else MAX_RSS_PER_SESSION
    sec.add(
        f"{label}: RSS per watched session", fmt_bytes(rss), others(lambda r: r.rss_per_session, fmt_bytes),
        fmt_ratio(vs_floor(lambda r: r.rss_per_session)),
        f"< {fmt_bytes(rss_target)}" if n >= RSS_TARGET_FROM else "(target from N=1,000)",
        status_for(rss, below=rss_target) if n >= RSS_TARGET_FROM else "",
    )  # fmt: skip
    sec.add(
        f"{label}: GC-tracked objects per watched session", f"{fig(ours, lambda r: r.objects_per_session):.1f}",
        others(lambda r: r.objects_per_session, lambda v: f"{v:.1f}"),
        fmt_ratio(vs_floor(lambda r: r.objects_per_session)),
    )  # fmt: skip
    startup = fig(ours, _startup)
    startup_target = mode == "feed" and (n >= STARTUP_FROM or row.latency > 0)
    sec.add(
        f"{label}: startup, until every session is watched", _fmt_startup(ours),
        others(_startup, fmt_seconds), fmt_ratio(vs_floor(_startup)),
        f"<= {STARTUP_LIMIT:g} s" if startup_target else "",
        status_for(startup, below=STARTUP_LIMIT + 1e-9) if startup_target else "",
    )  # fmt: skip
    sec.add(
        f"{label}: requests by what they read", _fmt_reads(ours),
        ", ".join(f"{name} {_fmt_reads(rs)}" for name, rs in (("floor", floor), ("raw", raw)) if rs),
    )  # fmt: skip
    logged = fig(ours, lambda r: r.log_records)
    sec.add(
        f"{label}: retries and backoffs logged (INFO and up)", f"{logged:.0f}", "", "",
        "none" if row.latency else "", status_for(logged, below=0.5) if row.latency else "",
    )  # fmt: skip
    sec.add(
        f"{label}: emulator CPU share", f"{fig(ours, lambda r: r.server_cpu_share):.1%} of a core",
        others(lambda r: r.server_cpu_share, lambda v: f"{v:.1%}"),
    )  # fmt: skip
    _notes(sec, result)


def _notes(sec: Section, result: RowResult) -> None:
    label = result.row.label
    sec.notes.append(f"{label}: the emulator made its {result.row.sessions:,} live sessions in "
                     f"{result.setup_seconds:.1f} s (one control call).")  # fmt: skip
    for measured in result.rounds:
        for name, r in measured.items():
            if r.server_cpu_share >= SERVER_SATURATED:
                sec.notes.append(
                    f"{label} ({name}): the emulator used {r.server_cpu_share:.0%} of its core, so it, not the "
                    "client, may have set the pace."
                )
            if r.settled < r.sessions:
                sec.notes.append(f"{label} ({name}): only {r.settled:,} of {r.sessions:,} sessions reported within "
                                 "the settle time.")  # fmt: skip
            if r.undetected:
                sec.notes.append(f"{label} ({name}): {r.undetected:,} of {r.changes:,} changes not reported in time.")
            if r.log_records and name == "sdk":
                sec.notes.append(f"{label} (sdk): {r.log_records} log records, e.g. {'; '.join(r.log_sample[:2])}")


def _fmt_reads(rs: Sequence[PhaseResult]) -> str:
    """The windows' requests by kind over every round, largest first: ``events 94%, status 6%``."""
    reads: Counter[str] = Counter()
    for r in rs:
        reads.update(r.reads)
    total = sum(reads.values())
    parts = sorted(reads.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{kind} {count / total:.0%}" for kind, count in parts) if total else "none"


def _fmt_rate(value: float) -> str:
    return f"{value:.3f}" if not value < 0.01 else f"{value:.2g}"


def _startup(r: PhaseResult) -> float:
    return r.startup if r.startup is not None else math.nan


def _fmt_startup(rs: Sequence[PhaseResult]) -> str:
    done = [r.startup for r in rs if r.startup is not None]
    if len(done) == len(rs):
        return fmt_seconds(median(done))
    worst = min(r.settled for r in rs)
    return f"> {rs[0].settle_timeout:g} s ({worst:,} of {rs[0].sessions:,} watched)"


def _lag(rs: Sequence[PhaseResult]) -> str:
    p50 = median([percentile(r.lags, 50) for r in rs])
    p99 = median([percentile(r.lags, 99) for r in rs])
    return f"{fmt_seconds(p50)} / {fmt_seconds(p99)}"


def _summary(r: PhaseResult) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins(r)
    lags = out.pop("lags")
    out |= {
        "cpu_share": r.cpu_share, "cpu_per_request": r.cpu_per_request, "gc_per_request": r.gc_per_request,
        "requests_per_session_interval": r.requests_per_session_interval, "rss_per_session": r.rss_per_session,
        "objects_per_session": r.objects_per_session, "lag_p50": percentile(lags, 50),
        "lag_p99": percentile(lags, 99), "lag_max": max(lags, default=math.nan), "lags": lags,
    }  # fmt: skip
    return out
