"""Call throughput and client CPU per call: sigma-async vs raw aiohttp + msgspec vs httpx + pydantic."""

from __future__ import annotations

import gc
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import anyio

from ._baselines import CONTENDERS, ENDPOINTS, Call, open_contender
from ._loops import run_on
from ._payloads import CHANNEL_ID
from ._report import Section, status_for
from ._stats import fmt_rate, fmt_ratio, fmt_seconds, median, paired_ratio, rotate

__all__ = ["CallsConfig", "Sample", "measure", "run_batch", "section", "loops_section"]

#: The SDK must keep at least this share of raw aiohttp's throughput, at every concurrency.
MIN_VS_RAW = 0.90
#: ... and be at least this many times faster than httpx + pydantic.
MIN_VS_HTTPX = 10.0

Key = tuple[str, str, int, str]  # (loop, endpoint, concurrency, contender)


@dataclass(frozen=True)
class CallsConfig:
    requests: int
    httpx_requests: int
    rounds: int
    concurrency: tuple[int, ...]
    loops: tuple[str, ...] = ("asyncio",)
    endpoints: tuple[str, ...] = ENDPOINTS
    #: Longest one batch may run, whatever its count: a stalled server cannot hang the run.
    time_limit: float = 60.0


@dataclass(frozen=True)
class Sample:
    calls: int
    wall: float
    cpu: float

    @property
    def cpu_per_call(self) -> float:
        return self.cpu / self.calls if self.calls else float("nan")

    @property
    def throughput(self) -> float:
        return self.calls / self.wall if self.wall else float("nan")


async def run_batch(call: Call, count: int, concurrency: int, time_limit: float, *, collect: bool = True) -> Sample:
    """``count`` calls with ``concurrency`` in flight; client CPU from ``process_time`` (the server is elsewhere)."""
    left = count
    done = 0
    deadline = time.perf_counter() + time_limit

    async def worker() -> None:
        nonlocal left, done
        while left > 0 and time.perf_counter() < deadline:
            left -= 1
            await call(CHANNEL_ID)
            done += 1

    if collect:
        # Garbage left by the previous contender is collected now, not charged to this one.
        gc.collect()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    # A task group: if one call fails, the others are cancelled rather than left running on a closing client.
    async with anyio.create_task_group() as tg:
        for _ in range(min(concurrency, count)):
            tg.start_soon(worker)
    return Sample(done, time.perf_counter() - wall0, time.process_time() - cpu0)


def measure(config: CallsConfig, url: str) -> dict[Key, list[Sample]]:
    """Every (loop, endpoint, concurrency, contender), ``rounds`` times, interleaved A B C A B C...

    Each round runs each loop in turn with fresh clients, so loops are interleaved too; inside a round the
    contender that goes first rotates, so none is always measured right after the slow one's garbage.
    """
    results: dict[Key, list[Sample]] = defaultdict(list)
    for round_no in range(config.rounds):
        for loop in rotate(config.loops, round_no):
            run_on(loop, _round(config, url, loop, round_no, results))
    return results


async def _round(config: CallsConfig, url: str, loop: str, round_no: int, results: dict[Key, list[Sample]]) -> None:
    pool = max(config.concurrency)
    contenders = [await open_contender(name, url, max_connections=pool) for name in CONTENDERS]
    try:
        for endpoint in config.endpoints:
            for concurrency in config.concurrency:
                for contender in rotate(contenders, round_no):
                    call = contender.calls[endpoint]
                    count = config.httpx_requests if contender.name == "httpx" else config.requests
                    # One call per connection first: connecting is not what is measured.
                    await run_batch(call, concurrency, concurrency, config.time_limit)
                    sample = await run_batch(call, max(count, concurrency), concurrency, config.time_limit)
                    results[(loop, endpoint, concurrency, contender.name)].append(sample)
    finally:
        for contender in contenders:
            await contender.close()


def _figures(results: dict[Key, list[Sample]], loop: str, endpoint: str, concurrency: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in CONTENDERS:
        samples = results.get((loop, endpoint, concurrency, name), [])
        out[name] = {
            "throughput": [s.throughput for s in samples],
            "cpu_per_call": [s.cpu_per_call for s in samples],
            "median_throughput": median([s.throughput for s in samples]),
            "median_cpu_per_call": median([s.cpu_per_call for s in samples]),
        }
    out["raw_vs_httpx"] = paired_ratio(out["raw"]["throughput"], out["httpx"]["throughput"])
    for base in ("raw", "httpx"):
        out[f"throughput_ratio_vs_{base}"] = paired_ratio(out["sigma"]["throughput"], out[base]["throughput"])
        out[f"cpu_ratio_vs_{base}"] = paired_ratio(out["sigma"]["cpu_per_call"], out[base]["cpu_per_call"])
    return out


def section(config: CallsConfig, results: dict[Key, list[Sample]], loop: str = "asyncio") -> Section:
    """The throughput table for one loop, with targets."""
    sec = Section("calls", f"Call throughput and client CPU per call ({loop} loop, canned server in another process)")
    for endpoint in config.endpoints:
        for c in config.concurrency:
            f = _figures(results, loop, endpoint, c)
            sec.data[f"{endpoint} c={c}"] = f
            sigma, raw, hx = f["sigma"], f["raw"], f["httpx"]
            vs_raw, vs_httpx = f["throughput_ratio_vs_raw"], f["throughput_ratio_vs_httpx"]
            sec.add(
                f"{endpoint} c={c} throughput", fmt_rate(sigma["median_throughput"]),
                f"raw aiohttp {fmt_rate(raw['median_throughput'])}", fmt_ratio(vs_raw),
                f"≥ {MIN_VS_RAW:.2f}x", status_for(vs_raw, at_least=MIN_VS_RAW),
            )
            sec.add(
                f"{endpoint} c={c} throughput", fmt_rate(sigma["median_throughput"]),
                # The floor's own lead over httpx, beside it: where raw misses 10x too, no SDK on top can make it.
                f"httpx+pydantic {fmt_rate(hx['median_throughput'])} (raw: {fmt_ratio(f['raw_vs_httpx'])})",
                fmt_ratio(vs_httpx),
                f"≥ {MIN_VS_HTTPX:.0f}x", status_for(vs_httpx, at_least=MIN_VS_HTTPX),
            )
            sec.add(
                f"{endpoint} c={c} client CPU/call", fmt_seconds(sigma["median_cpu_per_call"]),
                f"raw {fmt_seconds(raw['median_cpu_per_call'])} | httpx {fmt_seconds(hx['median_cpu_per_call'])}",
                f"{fmt_ratio(f['cpu_ratio_vs_raw'])} | {fmt_ratio(f['cpu_ratio_vs_httpx'])}",
            )
    sec.notes += [
        f"{config.rounds} rounds of {config.requests} calls (httpx + pydantic: {config.httpx_requests}, at least one "
        "per connection), contenders interleaved and the first one rotated each round.",
        "CPU/call is the client process's process_time over the batch divided by calls; the server runs in "
        "another process, so none of its work is counted.",
        "raw aiohttp = one ClientSession, f-string URLs, msgspec into the SDK's own structs: the floor. "
        "sessions.list = one page of 100 sessions (~170 KB).",
    ]
    return sec


def loops_section(config: CallsConfig, results: dict[Key, list[Sample]]) -> Section:
    """uvloop against the standard loop, for every contender, and the SDK's targets again on uvloop."""
    sec = Section("loops", "Event loop: uvloop vs asyncio (same calls, rounds interleaved across loops)")
    if "uvloop" not in config.loops:
        sec.add("uvloop", "not installed", target="—", status="n/a")
        sec.notes.append("pip install uvloop to measure it.")
        return sec
    for endpoint in config.endpoints:
        for c in config.concurrency:
            on_uv, on_std = _figures(results, "uvloop", endpoint, c), _figures(results, "asyncio", endpoint, c)
            sec.data[f"{endpoint} c={c}"] = {"uvloop": on_uv, "asyncio": on_std}
            gains = []
            for name in ("sigma", "raw"):
                gain = paired_ratio(on_uv[name]["throughput"], on_std[name]["throughput"])
                gains.append(gain)
                if name == "sigma":
                    sec.add(
                        f"{endpoint} c={c} sigma throughput", f"uvloop {fmt_rate(on_uv[name]['median_throughput'])}",
                        f"asyncio {fmt_rate(on_std[name]['median_throughput'])}", fmt_ratio(gain),
                    )
            vs_raw = on_uv["throughput_ratio_vs_raw"]
            sec.add(
                f"{endpoint} c={c} on uvloop", fmt_rate(on_uv["sigma"]["median_throughput"]),
                f"raw aiohttp {fmt_rate(on_uv['raw']['median_throughput'])}", fmt_ratio(vs_raw),
                f"≥ {MIN_VS_RAW:.2f}x", status_for(vs_raw, at_least=MIN_VS_RAW),
            )
            sec.data[f"{endpoint} c={c}"]["raw_uvloop_gain"] = gains[1]
    sec.notes.append("The first row of each pair is uvloop's gain for the SDK; the second, the SDK against raw "
                     "aiohttp with both on uvloop.")
    return sec
