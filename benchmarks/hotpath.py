"""Where the client's CPU goes on the hottest path (``channels.get`` at concurrency 32), by cProfile.

cProfile roughly triples the cost of each Python call, so its absolute figures are inflated; the shares by
library, and the difference to raw aiohttp call by call, are what to read.
"""

from __future__ import annotations

import cProfile
import pstats
from collections import Counter
from typing import Any

from ._baselines import open_contender
from ._loops import run_on
from ._report import Section
from .calls import run_batch

__all__ = ["categorise", "run"]

_IDLE = "blocked in epoll (waiting for the server)"
# Matched in order against the function's file (or, for C functions, its name).
_CATEGORIES = (
    ("sigma_async", "sigma_async"),
    ("aiohttp", "aiohttp"),
    ("yarl/multidict/propcache", "yarl"),
    ("yarl/multidict/propcache", "multidict"),
    ("yarl/multidict/propcache", "propcache"),
    ("msgspec", "msgspec"),
    ("anyio", "anyio"),
    ("benchmark harness", "benchmarks"),
    ("asyncio + selectors", "asyncio"),
    ("asyncio + selectors", "selectors"),
    ("socket syscalls", "_socket.socket"),
    (_IDLE, "select.epoll"),
)


def categorise(func: tuple[str, int, str]) -> str:
    filename, _, name = func
    where = filename if filename != "~" else name
    for category, marker in _CATEGORIES:
        if marker in where:
            return category
    return "other (stdlib, builtins)"


def run(url: str, *, calls: int, concurrency: int) -> Section:
    profiles = {name: run_on("asyncio", _profiled(name, url, calls, concurrency)) for name in ("sigma", "raw")}
    sec = Section("profile", f"Profile: channels.get at concurrency {concurrency}, {calls} calls (cProfile)")
    shares: dict[str, dict[str, float]] = {}
    per_call: dict[str, float] = {}
    idle_share: dict[str, float] = {}
    for name, stats in profiles.items():
        by_category: Counter[str] = Counter()
        for func, (_, _, tottime, _, _) in stats.items():
            by_category[categorise(func)] += tottime
        # Waiting is not work: the shares are of the time the client spent computing.
        idle = by_category.pop(_IDLE, 0.0)
        total = sum(by_category.values())
        idle_share[name] = idle / (idle + total)
        per_call[name] = total / calls
        shares[name] = {k: v / total for k, v in by_category.most_common()}
    for category, share in shares["sigma"].items():
        sec.add(f"CPU share: {category}", f"{share:.1%}", f"raw {shares['raw'].get(category, 0.0):.1%}")
    sec.add("profiled CPU per call", f"{per_call['sigma'] * 1e6:.1f} µs", f"raw {per_call['raw'] * 1e6:.1f} µs",
            f"{per_call['sigma'] / per_call['raw']:.3f}x")
    sec.notes.append(
        f"Blocked in epoll, left out of the shares: sigma {idle_share['sigma']:.0%}, raw {idle_share['raw']:.0%} "
        "of profiled time."
    )
    top = _top(profiles["sigma"], calls, 12)
    diff = _difference(profiles["sigma"], profiles["raw"], calls, 12)
    sec.notes.append("Top functions of sigma-async by own time (µs per call, profiled): " +
                     "; ".join(f"{name} {us:.2f}" for name, us in top))
    sec.notes.append("Largest differences to raw aiohttp (µs per call, profiled; + costs more in the SDK): " +
                     "; ".join(f"{name} {us:+.2f}" for name, us in diff))
    sec.data = {
        "shares": shares, "idle_share": idle_share, "profiled_seconds_per_call": per_call, "top": top,
        "difference_to_raw": diff,
    }
    return sec


async def _profiled(name: str, url: str, calls: int, concurrency: int) -> dict[Any, Any]:
    contender = await open_contender(name, url, max_connections=concurrency)
    call = contender.calls["channels.get"]
    try:
        await run_batch(call, concurrency * 2, concurrency, 30.0)
        # The default wall-clock timer is cheap, so it distorts little; the time spent blocked in epoll waiting
        # for the server is then booked to epoll alone, and left out of the shares below.
        profile = cProfile.Profile()
        profile.enable()
        await run_batch(call, calls, concurrency, 60.0, collect=False)
        profile.disable()
    finally:
        await contender.close()
    return pstats.Stats(profile).stats  # type: ignore[attr-defined,no-any-return]


def _label(func: tuple[str, int, str]) -> str:
    filename, line, name = func
    if filename == "~":
        return name
    short = filename.split("site-packages/")[-1].split("/work/main/")[-1].split("/lib/python3")[-1]
    return f"{name} ({short}:{line})"


def _top(stats: dict[Any, Any], calls: int, n: int) -> list[tuple[str, float]]:
    busy = [kv for kv in stats.items() if categorise(kv[0]) != _IDLE]
    ranked = sorted(busy, key=lambda kv: kv[1][2], reverse=True)[:n]
    return [(_label(func), row[2] / calls * 1e6) for func, row in ranked]


def _difference(ours: dict[Any, Any], theirs: dict[Any, Any], calls: int, n: int) -> list[tuple[str, float]]:
    funcs = {f for f in set(ours) | set(theirs) if categorise(f) != _IDLE}
    deltas = [(func, (ours.get(func, (0, 0, 0.0))[2] - theirs.get(func, (0, 0, 0.0))[2]) / calls) for func in funcs]
    deltas.sort(key=lambda fd: abs(fd[1]), reverse=True)
    return [(_label(func), delta * 1e6) for func, delta in deltas[:n]]
