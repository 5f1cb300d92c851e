"""Long-run safety: ``monitor`` over 500 sessions with faults, for minutes. Skipped unless ``-m slow``.

    SIGMA_SOAK_SECONDS=600 pytest -m slow tests/test_soak.py -s

Prints RSS samples; asserts memory is flat after warm-up, every transition arrived once, and no task or
connection is left behind.
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
import time

import pytest

from sigma_async import RetryPolicy
from sigma_async.testing import Emulator, Fault

pytestmark = pytest.mark.slow

SESSIONS = 500
INTERVAL = 0.5


def rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def test_monitor_soak_keeps_memory_flat_and_leaves_nothing_behind() -> None:
    duration = float(os.environ.get("SIGMA_SOAK_SECONDS", "600"))
    rng = random.Random(7)
    async with Emulator(manual_clock=True, seed=7, journal_limit=1000) as emu:
        for route in ("GET /sessions/{id}/status", "GET /events"):
            emu.faults.add(route, Fault(status=503), probability=0.05, seed=1)
            emu.faults.add(route, Fault(drop=True), probability=0.02, seed=2)
        emu.faults.add("GET /events", Fault(status=429, retry_after=0.2), probability=0.001, seed=3)
        client = emu.client(retry=RetryPolicy(max_retries=2, initial_delay=0.01, max_delay=0.1), max_connections=50)
        channels = [emu.create_channel(f"soak-{i}") for i in range(SESSIONS)]
        sessions = {emu.start_channel(c.id).id: c.id for c in channels}
        expected: dict[str, int] = {sid: 1 for sid in sessions}  # the initialize event of each start
        received: dict[str, int] = {}  # event transitions, by session
        lives: set[str] = set()
        samples: list[tuple[float, int]] = []
        started = time.monotonic()
        async with client, client.monitor(session_ids=list(sessions), interval=INTERVAL, stay_open=True) as monitor:

            async def drive() -> None:
                # Each tick some sessions get an event, and a few end and are replaced by a new session.
                while time.monotonic() - started < duration:
                    for sid in rng.sample(sorted(sessions), 25):
                        emu.add_event(sid, rng.choice(["stable", "signal_interrupted", "signal_restored"]))
                        expected[sid] += 1
                    for sid in rng.sample(sorted(sessions), 3):
                        channel_id = sessions.pop(sid)
                        emu.stop_channel(channel_id)  # stop + ended events
                        expected[sid] += 2
                        new = emu.start_channel(channel_id).id
                        sessions[new] = channel_id
                        expected[new] = 1
                        monitor.add_session(new)
                    gc.collect()
                    samples.append((time.monotonic() - started, rss_kib()))
                    await asyncio.sleep(INTERVAL)  # the load's pace: the soak runs for a wall-clock duration
                # Let every watch catch up on what was written, then stop.
                await emu.wait_for(lambda: all(received.get(s, 0) >= n for s, n in expected.items()), timeout=60)
                monitor_task.cancel()

            async def consume() -> None:
                async for t in monitor:
                    if t.source == "status":
                        # Live, when a session is first seen on air: no event of its own, and once at most.
                        assert t.kind == "live" and t.session_id not in lives, t
                        lives.add(t.session_id)
                        continue
                    received[t.session_id] = received.get(t.session_id, 0) + 1

            monitor_task = asyncio.ensure_future(consume())
            driver = asyncio.ensure_future(drive())
            await asyncio.wait([monitor_task, driver], return_when=asyncio.FIRST_EXCEPTION)
            driver.result()
        leftover = [t for t in asyncio.all_tasks() if "sigma-async" in t.get_name()]
    for at, rss in samples[:: max(1, len(samples) // 20)]:
        print(f"t={at:7.1f}s rss={rss / 1024:7.1f} MiB")
    warm = [rss for at, rss in samples if at >= duration / 3]
    growth_mib = (max(warm) - min(warm)) / 1024
    print(f"sessions watched: {len(expected)}, event transitions: {sum(received.values())}, live: {len(lives)},"
          " growth after warm-up:"
          f" {growth_mib:.1f} MiB")
    assert received == expected
    assert growth_mib < 20
    assert leftover == []
    assert client.closed
