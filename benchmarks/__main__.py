"""Run the benchmarks: ``python -m benchmarks [--quick | --smoke] [--json] [--only calls,watch] ...``."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from ._loops import available_loops
from ._report import NOT_MET, Section, machine, render_json, render_table

__all__ = ["SECTIONS", "Sizes", "main"]

#: Every section, in the order they run and print. ``profile`` and ``relay`` run only when asked for (``relay``
#: starts a webhook receiver, two nats-servers and an emulator).
SECTIONS = ("calls", "loops", "decode", "bulk", "watch")
# Run only when named: ``replicas`` starts a nats-server, an emulator and three relay processes (about a minute).
# ``throttle`` runs the request budget against a throttling emulator, with and without ``adaptive``.
# ``apply`` provisions 500 channels four ways per round (apply, create_many, and both as commands).
# ``playback`` runs ffmpeg packaging a live HLS ladder and times stall and resume detection (about a minute).
OPTIONAL = ("playback", "profile", "relay", "replicas", "throttle", "apply")


@dataclass(frozen=True)
class Sizes:
    """How much work each section does."""

    requests: int
    httpx_requests: int
    rounds: int
    concurrency: tuple[int, ...]
    sessions: tuple[int, ...]
    interval: float
    window: int
    bulk_items: int
    bulk_concurrency: int
    bulk_latency: float
    decode_rounds: int
    decode_seconds: float
    profile_calls: int
    throttle_seconds: float = 15.0
    #: The watch section's rows (``MODE:SESSIONS[@LATENCY]``); ``--sessions`` replaces them with every mode at
    #: each size, ``--large`` adds ``watch.LARGE_ROWS_SPEC``.
    watch_rows: str = "lean:1000,lean:2000,lean:5000,full:5000,feed:10000"
    watch_rounds: int = 1


FULL = Sizes(
    requests=2000, httpx_requests=200, rounds=5, concurrency=(1, 32, 256), sessions=(1000, 5000, 10_000),
    interval=2.0, window=5, bulk_items=1000, bulk_concurrency=50, bulk_latency=0.02, decode_rounds=7,
    decode_seconds=0.1, profile_calls=20000,
)
QUICK = replace(
    FULL, requests=600, httpx_requests=60, rounds=3, sessions=(100,), window=3, decode_rounds=5, decode_seconds=0.05,
    profile_calls=5000, throttle_seconds=8.0, watch_rows="lean:100,feed:100",
)
# A few seconds, for CI: every section runs and prints, the figures mean little.
SMOKE = replace(
    FULL, requests=40, httpx_requests=8, rounds=1, concurrency=(1, 8), sessions=(20,), interval=0.5, window=2,
    bulk_items=100, bulk_concurrency=10, bulk_latency=0.02, decode_rounds=2, decode_seconds=0.005, profile_calls=200,
    throttle_seconds=2.0, watch_rows="lean:20,feed:20",
)


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part.replace("_", "")) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("expected positive integers")
    return values


def _rows(text: str) -> str:
    from .watch import parse_rows

    try:
        parse_rows(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _names(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [n for n in names if n not in SECTIONS + OPTIONAL]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown section {unknown[0]!r}; sections: {', '.join(SECTIONS + OPTIONAL)}")
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure sigma-async against raw aiohttp + msgspec and httpx + pydantic, side by side, "
        "against servers in separate processes. Prints a table of medians, ratios and targets.",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smaller sizes; the whole run takes under two minutes")
    size.add_argument("--smoke", "--tiny", dest="smoke", action="store_true", help="a few seconds, for CI")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    parser.add_argument("--only", type=_names, action="append", metavar="NAME[,NAME]",
                        help=f"run only these sections: {', '.join(SECTIONS + OPTIONAL)} (repeatable)")
    parser.add_argument("--profile", action="store_true", help="also profile channels.get at concurrency 32")
    parser.add_argument("--requests", type=int, help="calls per batch for sigma-async and raw aiohttp")
    parser.add_argument("--httpx-requests", type=int, help="calls per batch for httpx + pydantic (it is ~20x slower)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds per measurement")
    parser.add_argument("--concurrency", type=_ints, help="calls in flight, e.g. 1,32,256")
    parser.add_argument("--sessions", type=_ints,
                        help="watch rows: every poll mode at each of these sizes, e.g. 100,1000,5000")
    parser.add_argument("--watch-rows", type=_rows, metavar="MODE:N[@S],...",
                        help="watch rows exactly, e.g. lean:5000,feed:30000@0.2 (@S: the server holds each answer "
                        "S seconds)")
    parser.add_argument("--large", action="store_true",
                        help="add the large watch rows: feed at 30,000 and 100,000 sessions, and 30,000 against a "
                        "server that takes 200 ms per answer (several minutes each)")
    parser.add_argument("--watch-rounds", type=int, help="rounds per watch row, contenders in rotated order")
    parser.add_argument("--interval", type=float, help="watch poll interval in seconds")
    parser.add_argument("--window", type=int, help="watch steady-state window, in intervals")
    parser.add_argument("--watch-connections", type=int, default=100,
                        help="connection pool of each watcher (default: the SDK's own default, %(default)s)")
    parser.add_argument("--bulk-items", type=int, help="creates in the bulk run")
    parser.add_argument("--bulk-concurrency", type=int, help="creates in flight in the bulk run")
    parser.add_argument("--loop", choices=available_loops(), default="asyncio",
                        help="event loop for the watch and bulk runs (default: %(default)s)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is not met")
    return parser


def sizes_from(args: argparse.Namespace) -> Sizes:
    base = SMOKE if args.smoke else QUICK if args.quick else FULL
    overrides = {
        name: getattr(args, name)
        for name in ("requests", "httpx_requests", "rounds", "concurrency", "sessions", "interval", "window",
                     "bulk_items", "bulk_concurrency", "watch_rows", "watch_rounds")
        if getattr(args, name) is not None
    }
    if args.sessions is not None and args.watch_rows is None:
        from .watch import MODES

        overrides["watch_rows"] = ",".join(f"{mode}:{n}" for n in args.sessions for mode in MODES)
    if args.large:
        from .watch import LARGE_ROWS_SPEC

        overrides["watch_rows"] = f"{overrides.get('watch_rows', base.watch_rows)},{LARGE_ROWS_SPEC}"
    return replace(base, **overrides)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sizes = sizes_from(args)
    wanted = [n for group in args.only for n in group] if args.only else list(SECTIONS)
    if args.profile and "profile" not in wanted:
        wanted.append("profile")
    info = machine()
    sections: list[Section] = []
    started = time.perf_counter()
    for name, runner in _runners(sizes, args.loop, args.watch_connections, wanted).items():
        _progress(f"[{time.perf_counter() - started:6.1f}s] {name} ...")
        sections += runner()
    _progress(f"[{time.perf_counter() - started:6.1f}s] done")
    config = {
        **asdict(sizes), "loop": args.loop, "watch_connections": args.watch_connections, "sections": wanted,
        "seconds": time.perf_counter() - started,
    }
    if args.json:
        print(json.dumps(_clean(render_json(sections, info, config)), indent=2, allow_nan=False))
    else:
        print(render_table(sections, info))
        print(f"Ran in {config['seconds']:.0f} s.")
    failed = any(row.status == NOT_MET for section in sections for row in section.rows)
    return 1 if args.strict and failed else 0


def _runners(sizes: Sizes, loop: str, pool: int, wanted: list[str]) -> dict[str, Callable[[], list[Section]]]:
    """The work for each wanted section; ``calls`` and ``loops`` share one interleaved run."""
    runners: dict[str, Callable[[], list[Section]]] = {}
    if "calls" in wanted or "loops" in wanted:
        runners["calls" if "calls" in wanted else "loops"] = lambda: _calls(sizes, wanted)
    if "decode" in wanted:
        runners["decode"] = lambda: _decode(sizes)
    if "bulk" in wanted:
        runners["bulk"] = lambda: _bulk(sizes, loop)
    if "watch" in wanted:
        runners["watch"] = lambda: _watch(sizes, loop, pool)
    if "relay" in wanted:
        runners["relay"] = lambda: _relay(sizes, loop)
    if "profile" in wanted:
        runners["profile"] = lambda: _profile(sizes)
    if "throttle" in wanted:
        runners["throttle"] = lambda: _throttle(sizes)
    if "replicas" in wanted:
        runners["replicas"] = lambda: _replicas(sizes)
    if "apply" in wanted:
        runners["apply"] = lambda: _apply(sizes)
    if "playback" in wanted:
        runners["playback"] = lambda: _playback(sizes)
    return runners


def _apply(sizes: Sizes) -> list[Section]:
    from . import apply

    smoke = sizes.requests < QUICK.requests
    config = apply.ApplyBenchConfig(channels=50, rounds=1) if smoke else apply.ApplyBenchConfig(rounds=sizes.rounds)
    return [apply.run(config)]


def _playback(sizes: Sizes) -> list[Section]:
    from . import playback

    smoke = sizes.requests < QUICK.requests
    return [playback.run(playback.PlaybackConfig(rounds=1 if smoke else 6))]


def _throttle(sizes: Sizes) -> list[Section]:
    from . import throttle

    burst = throttle.BurstConfig(rounds=sizes.rounds, seconds=min(8.0, max(4.0, sizes.throttle_seconds)))
    return throttle.run(throttle.ThrottleConfig(seconds=sizes.throttle_seconds, burst=burst))


def _replicas(sizes: Sizes) -> list[Section]:
    from . import replicas

    smoke = sizes.requests < QUICK.requests
    config = replicas.ReplicasConfig(sessions=60, interval=1.0, lease_ttl=2.0) if smoke else replicas.ReplicasConfig()
    return [replicas.run(config)]


def _calls(sizes: Sizes, wanted: list[str]) -> list[Section]:
    from . import calls
    from ._server import canned_server

    loops = tuple(available_loops()) if "loops" in wanted else ("asyncio",)
    config = calls.CallsConfig(
        requests=sizes.requests, httpx_requests=sizes.httpx_requests, rounds=sizes.rounds,
        concurrency=sizes.concurrency, loops=loops,
    )
    with canned_server() as server:
        results = calls.measure(config, server.url)
    out = []
    if "calls" in wanted:
        out.append(calls.section(config, results))
    if "loops" in wanted:
        out.append(calls.loops_section(config, results))
    return out


def _decode(sizes: Sizes) -> list[Section]:
    from . import decode

    return [decode.run(decode.DecodeConfig(rounds=sizes.decode_rounds, target_seconds=sizes.decode_seconds))]


def _bulk(sizes: Sizes, loop: str) -> list[Section]:
    from . import bulk
    from ._server import canned_server

    config = bulk.BulkConfig(
        items=sizes.bulk_items, concurrency=sizes.bulk_concurrency, latency=sizes.bulk_latency,
        rounds=sizes.rounds, loop=loop,
    )
    with canned_server(latency=sizes.bulk_latency) as server:
        return [bulk.run(config, server.url)]


def _watch(sizes: Sizes, loop: str, pool: int) -> list[Section]:
    from . import watch

    config = watch.WatchConfig(
        rows=watch.parse_rows(sizes.watch_rows), interval=sizes.interval, window=sizes.window, loop=loop,
        max_connections=pool, rounds=sizes.watch_rounds,
    )
    return [watch.run(config, _progress)]


def _relay(sizes: Sizes, loop: str) -> list[Section]:
    from . import relay

    small = sizes.requests < 100  # the smoke run: every row printed, in a few seconds
    config = relay.RelayBenchConfig(
        sessions=20 if small else 100, records_per_session=5 if small else 50,
        watched=min(300, max(sizes.sessions)), interval=sizes.interval if small else 1.0, window=sizes.window,
        rounds=sizes.rounds, loop=loop,
    )
    return [relay.run(config)]


def _profile(sizes: Sizes) -> list[Section]:
    from . import hotpath
    from ._server import canned_server

    with canned_server() as server:
        return [hotpath.run(server.url, calls=sizes.profile_calls, concurrency=32)]


def _progress(message: str) -> None:
    # Progress goes to stderr, so that stdout holds only the table or the JSON document.
    print(message, file=sys.stderr, flush=True)


def _clean(value: Any) -> Any:
    """JSON-safe: NaN and infinities (not measured) become null, tuples lists, keys strings."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_clean(v) for v in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
