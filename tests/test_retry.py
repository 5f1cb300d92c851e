"""The retry layer without sockets: the client-wide pause, and what a ``Retry-After`` header means."""

from __future__ import annotations

import math

import pytest

from sigma_async import RateLimitError, RetryPolicy
from sigma_async import _protocol as proto
from sigma_async._retry import PauseGate


class FakeTime:
    """A clock that moves only when slept on; ``during_sleep`` runs inside each sleep (another call's answer)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self.during_sleep: list[object] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.during_sleep:
            action = self.during_sleep.pop(0)
            assert callable(action)
            action()


async def test_a_pause_extended_while_waiting_is_waited_out_too() -> None:
    time = FakeTime()
    gate = PauseGate(time.sleep, clock=time.clock)
    gate.pause(2.0)
    # While this call waits, another call's 429 pushes the pause 3 s past the deadline it was waiting for.
    time.during_sleep.append(lambda: gate.pause(3.0))
    await gate.wait()
    assert time.now == pytest.approx(1000.0 + 2.0 + 3.0)  # never woke to send inside the new pause
    assert time.sleeps == [2.0, 3.0]
    assert gate.remaining() == 0.0 and gate.until == 0.0  # passed: the hot path skips the gate again


async def test_a_pause_that_is_not_extended_is_waited_once() -> None:
    time = FakeTime()
    gate = PauseGate(time.sleep, clock=time.clock)
    gate.pause(1.5)
    await gate.wait(at_least=0.5)
    assert time.sleeps == [1.5]
    await gate.wait(at_least=0.25)  # no pause left: only the caller's own backoff
    assert time.sleeps == [1.5, 0.25]


async def test_a_sleep_that_does_not_move_the_clock_cannot_spin_the_gate() -> None:
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    gate = PauseGate(record, clock=lambda: 50.0)
    gate.pause(2.0)
    await gate.wait()
    assert waits == [2.0]


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("3", 3.0),
        (" 1.5 ", 1.5),
        ("0", 0.0),
        ("-5", 0.0),  # negative: now
        ("Wed, 21 Oct 2015 07:28:10 GMT", 0.0),  # long past: now
        ("1_0", None),  # float() reads 10; it is not delta-seconds
        ("1e3", None),
        ("0x10", None),
        ("nan", None),
        ("NaN", None),
        ("\u0661\u0660", None),  # Arabic-Indic digits: float() reads 10
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_accepts_only_decimal_seconds_or_an_http_date(header: str | None, seconds: float | None) -> None:
    assert proto.parse_retry_after(header, now=2_000_000_000.0) == seconds


def test_retry_after_infinity_is_longer_than_any_cap() -> None:
    assert proto.parse_retry_after("inf") == math.inf
    assert proto.parse_retry_after("Infinity") == math.inf
    assert proto.parse_retry_after("-inf") == 0.0
    err = proto.error_for(proto.Response(429, b"{}", retry_after="inf"), proto.build_get_channel("c"))
    assert isinstance(err, RateLimitError) and err.retry_after == math.inf
    # ... so the call raises at once instead of retrying as though no wait had been asked for.
    assert not RetryPolicy().is_retryable(err, proto.Operation.GET)
    assert proto.parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
