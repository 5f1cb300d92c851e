"""The request budget: the ceiling, fairness between callers, and convergence against a throttling server."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from sigma_async import BudgetStats, ChannelCreate, RateLimitError, RetryPolicy, SigmaError
from sigma_async._budget import RequestBudget, TokenBucket
from sigma_async.testing import Emulator
from sigma_async.testing._throttle import Throttle


class VirtualTime:
    """A clock that moves only when slept on. In the budget only the first caller in line sleeps, so one clock
    serves every caller, and minutes of traffic run in milliseconds."""

    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


def most_in_any_second(times: list[float]) -> int:
    times = sorted(times)
    most, lo = 0, 0
    for hi, t in enumerate(times):
        while times[lo] <= t - 1.0:
            lo += 1
        most = max(most, hi - lo + 1)
    return most


async def test_the_ceiling_holds_for_every_caller_together() -> None:
    vt = VirtualTime()
    budget = RequestBudget(rate_limit=20.0, adaptive=False, clock=vt.clock, sleep=vt.sleep)
    sent: list[float] = []

    async def caller() -> None:
        for _ in range(25):
            await budget.acquire()
            sent.append(vt.now)

    await asyncio.gather(*(caller() for _ in range(8)))
    assert len(sent) == 200 and budget.stats().sent == 200
    assert most_in_any_second(sent) <= 20 + 1  # the rate, plus one saved-up token
    assert vt.now == pytest.approx(199 / 20, rel=0.02)  # and no slower than the ceiling either


async def test_callers_waiting_on_a_short_budget_progress_evenly() -> None:
    vt = VirtualTime()
    budget = RequestBudget(rate_limit=5.0, adaptive=False, clock=vt.clock, sleep=vt.sleep)
    done = [0] * 12
    at_600: list[int] = []

    async def caller(i: int) -> None:
        while not at_600:
            await budget.acquire()
            done[i] += 1
            if sum(done) == 600:
                at_600.extend(done)

    await asyncio.gather(*(caller(i) for i in range(12)))
    # First come, first served: nobody starves, nobody races ahead. (The first caller took the one saved token
    # before the others had started, so it may be one ahead.)
    assert max(at_600) - min(at_600) <= 2 and min(at_600) >= 49


async def test_a_cancelled_waiter_leaves_the_line_and_the_next_one_goes() -> None:
    vt = VirtualTime()
    gate = asyncio.Event()

    async def held_sleep(seconds: float) -> None:
        await gate.wait()
        await vt.sleep(seconds)

    bucket = TokenBucket(1.0, burst=1, clock=vt.clock, sleep=held_sleep)
    await bucket.acquire()  # the saved token
    first = asyncio.create_task(bucket.acquire())
    second = asyncio.create_task(bucket.acquire())
    await asyncio.sleep(0)
    assert bucket.waiting == 2
    first.cancel()
    gate.set()
    await asyncio.wait_for(second, timeout=5)
    assert first.cancelled() and bucket.waiting == 0


async def test_against_a_throttling_server_the_adaptive_rate_settles_near_its_limit() -> None:
    # A simulated minute against a server that refuses past 100 requests/s: 32 callers as fast as they can.
    vt = VirtualTime()
    server = Throttle(clock=vt.clock)
    server.set(100.0)
    budget = RequestBudget(adaptive=True, clock=vt.clock, sleep=vt.sleep)
    answers: list[tuple[float, bool]] = []

    async def caller() -> None:
        while vt.now < 60.0:
            # As SigmaClient.send does: the epoch is read as the request leaves, the answer comes back later.
            if budget.engaged:
                await budget.acquire()
            else:
                budget.note_send()
            epoch = budget.epoch
            accepted = server.admit()
            await asyncio.sleep(0)  # the round trip (no virtual time: the server answers at once)
            answers.append((vt.now, accepted))
            if not accepted:
                budget.on_throttle(epoch)

    await asyncio.gather(*(caller() for _ in range(32)))
    settled = [ok for t, ok in answers if t >= 10.0]
    assert sum(settled) / 50.0 >= 90.0  # requests/s accepted, past the first ten seconds
    assert settled.count(False) / len(settled) <= 0.02
    assert answers.count((0.0, False)) <= 32  # the opening burst, before any 429 was seen
    assert 70.0 <= (budget.stats().rate or 0) <= 130.0


async def test_adaptive_clients_are_throttled_far_less_than_fixed_ones() -> None:
    # Real time against the emulator's own throttle; short runs, so the bounds are loose.
    fixed, adaptive = await throttled_run(adaptive=False), await throttled_run(adaptive=True)
    assert adaptive.throttled / adaptive.sent <= 0.25  # mostly the opening burst of 16 at once
    assert fixed.throttled / fixed.sent >= 0.5
    assert adaptive.sent - adaptive.throttled >= 0.6 * 200 * RUN_SECONDS  # near the limit, not starved
    assert adaptive.rate is not None and adaptive.rate < 400


RUN_SECONDS = 1.5


async def throttled_run(*, adaptive: bool) -> BudgetStats:
    async with Emulator(throttle=200) as emu:
        channel = emu.create_channel("busy")
        async with emu.client(adaptive=adaptive, retry=RetryPolicy(max_retries=0)) as client:
            deadline = time.monotonic() + RUN_SECONDS

            async def caller() -> None:
                while time.monotonic() < deadline:
                    with contextlib.suppress(RateLimitError):
                        await client.channels.get(channel.id)

            await asyncio.gather(*(caller() for _ in range(16)))
            stats = client.stats
        assert stats.throttled == emu.throttling.refused  # the client counted every 429 the server sent
        return stats


async def test_stats_count_sent_retried_and_throttled(emu: Emulator) -> None:
    emu.throttle(1000, burst=1)
    async with emu.client(retry=RetryPolicy(max_retries=3, initial_delay=0.001, max_delay=0.002)) as client:
        assert client.stats.sent == 0 and client.stats.rate is None  # no ceiling, no 429 yet: no limit
        results = await asyncio.gather(
            *(client.channels.create(ChannelCreate(name=f"c{i}")) for i in range(3)), return_exceptions=True
        )
        stats = client.stats
    assert stats.throttled >= 1 and stats.retried >= stats.throttled - sum(isinstance(r, SigmaError) for r in results)
    assert stats.sent == emu.journal.count() and stats.throttled == emu.throttling.refused
    assert stats.rate is not None  # a 429 was seen: the adaptive limit is on


def test_the_emulator_throttle_refuses_past_its_rate() -> None:
    now = [0.0]
    throttle = Throttle(clock=lambda: now[0])
    assert throttle.admit()  # off: everything goes
    throttle.set(10.0, burst=2)
    assert [throttle.admit() for _ in range(3)] == [True, True, False]
    now[0] += 0.1  # one token's worth
    assert [throttle.admit() for _ in range(2)] == [True, False]
    assert throttle.refused == 2 and throttle.refused_share == pytest.approx(2 / 5)
    with pytest.raises(ValueError):
        throttle.set(0)


def test_the_emulator_throttle_can_count_over_a_sliding_window() -> None:
    now = [0.0]
    throttle = Throttle(clock=lambda: now[0])
    throttle.set(10.0, window=1.0)  # 10 in any one second
    assert all(throttle.admit() for _ in range(10)) and not throttle.admit()
    now[0] = 0.99  # a token bucket would have refilled by now; the window still holds all ten
    assert not throttle.admit()
    now[0] = 1.0  # the ten age out together: ten more, and refused requests took no room meanwhile
    assert sum(throttle.admit() for _ in range(12)) == 10
    assert (throttle.admitted, throttle.refused) == (20, 4)
    for bad in ({"window": 0.0}, {"window": float("inf")}, {"window": 1.0, "burst": 5}):
        with pytest.raises(ValueError):
            throttle.set(10.0, **bad)  # type: ignore[arg-type]


def test_a_bad_rate_limit_is_refused_at_once() -> None:
    for bad in (0, -1.0, float("inf"), float("nan"), True):
        with pytest.raises(ValueError):
            RequestBudget(rate_limit=bad)
