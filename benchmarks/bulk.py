"""Bulk creates against a slow server: how close ``channels.create_many`` gets to the ideal wall time."""

from __future__ import annotations

import time
from dataclasses import dataclass

import anyio

from sigma_async import ChannelCreate, SigmaClient
from sigma_async.testing import DEFAULT_APP_ID, DEFAULT_SECRET_KEY, DEFAULT_USERNAME

from ._baselines import RawClient
from ._loops import run_on
from ._report import Section, status_for
from ._stats import fmt_ratio, fmt_seconds, median, rotate

__all__ = ["BulkConfig", "run"]

#: Wall time may be at most this multiple of the ideal (items / concurrency x latency).
MAX_VS_IDEAL = 1.25


@dataclass(frozen=True)
class BulkConfig:
    items: int
    concurrency: int
    latency: float
    rounds: int
    loop: str = "asyncio"

    @property
    def ideal(self) -> float:
        """The wall time of perfect pipelining: full batches of ``concurrency``, each ``latency`` long."""
        return -(-self.items // self.concurrency) * self.latency


def run(config: BulkConfig, url: str) -> Section:
    """``rounds`` runs each of the SDK and of a semaphore-bounded raw aiohttp loop, interleaved."""
    walls: dict[str, list[float]] = {"sigma": [], "raw": []}
    failures: dict[str, int] = {"sigma": 0, "raw": 0}
    for round_no in range(config.rounds):
        for name in rotate(["sigma", "raw"], round_no):
            wall, failed = run_on(config.loop, _timed(name, config, url))
            walls[name].append(wall)
            failures[name] += failed

    sec = Section(
        "bulk",
        f"Bulk: {config.items} creates at concurrency {config.concurrency}, server latency "
        f"{fmt_seconds(config.latency)} (ideal {fmt_seconds(config.ideal)})",
    )
    ours, raw = median(walls["sigma"]), median(walls["raw"])
    vs_ideal = ours / config.ideal
    sec.add(
        "create_many wall time", fmt_seconds(ours), f"ideal {fmt_seconds(config.ideal)}", fmt_ratio(vs_ideal),
        f"≤ {MAX_VS_IDEAL:.2f}x ideal", status_for(vs_ideal, below=MAX_VS_IDEAL + 1e-9),
    )
    sec.add("create_many wall time", fmt_seconds(ours), f"raw aiohttp {fmt_seconds(raw)}", fmt_ratio(ours / raw))
    sec.data = {"walls": walls, "failures": failures, "ideal": config.ideal, "ratio_vs_ideal": vs_ideal}
    sec.notes.append(
        f"{config.rounds} rounds, median wall; every answer held {fmt_seconds(config.latency)} by the server; "
        f"connections opened before timing. Failed items: sigma {failures['sigma']}, raw {failures['raw']}."
    )
    return sec


async def _timed(name: str, config: BulkConfig, url: str) -> tuple[float, int]:
    specs = [ChannelCreate(name=f"bulk-{i}") for i in range(config.items)]
    warm = specs[: config.concurrency]
    if name == "sigma":
        async with SigmaClient(
            username=DEFAULT_USERNAME, secret_key=DEFAULT_SECRET_KEY, app_id=DEFAULT_APP_ID, base_url=url
        ) as client:
            await client.channels.create_many(warm, concurrency=config.concurrency)
            start = time.perf_counter()
            results = await client.channels.create_many(specs, concurrency=config.concurrency)
            wall = time.perf_counter() - start
        return wall, sum(isinstance(r, Exception) for r in results)

    raw = RawClient(url, max_connections=100)
    try:
        await _raw_many(raw, warm, config.concurrency)
        start = time.perf_counter()
        failed = await _raw_many(raw, specs, config.concurrency)
        return time.perf_counter() - start, failed
    finally:
        await raw.aclose()


async def _raw_many(raw: RawClient, specs: list[ChannelCreate], concurrency: int) -> int:
    """The hand-written way: a semaphore around each create, failures counted."""
    limiter = anyio.CapacityLimiter(concurrency)
    failed = 0

    async def one(spec: ChannelCreate) -> None:
        nonlocal failed
        async with limiter:
            try:
                await raw.create_channel(spec)
            except Exception:
                failed += 1

    # Bounded in time as well as count: a stalled server ends the run instead of hanging it.
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for spec in specs:
                tg.start_soon(one, spec)
    return failed
