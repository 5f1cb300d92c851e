"""The client-wide request budget: a fair token bucket under an optional ceiling, and an adaptive rate that
backs off when the server answers 429 and climbs back (CUBIC, as in AWS SDKs' adaptive retry mode).

How the adaptive rate moves, and where it departs from botocore's ``ClientRateLimiter``:

- Until the first 429 nothing is limited (unless a ceiling is set): calls take the no-limit fast path.
- On a 429 the rate is cut to ``BETA`` times ``w_max``, the rate the server was *accepting* (requests sent
  minus requests throttled over the last second), not the rate sent: a client sending at ten times the
  server's limit lands just under that limit in one cut, where a cut of the send rate takes several.
- Only one cut per round trip: a 429 answering a request sent before the last cut says nothing about the new
  rate, so it is counted but does not cut again. botocore cuts on every 429 of a burst and collapses the rate.
- Between cuts the rate follows the CUBIC curve: back up to ``w_max`` quickly, flat near it, then probing
  above. Once it is ``RELEASE`` times ``w_max`` without a 429, the server's limit has gone: the budget lets go.
- Waiters are served first come, first served (botocore wakes threads in no set order), so many watchers on one
  client share a short budget evenly.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

__all__ = ["BudgetStats", "RequestBudget", "TokenBucket"]

logger = logging.getLogger("sigma_async")

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

#: The adaptive rate never goes below this (requests per second).
MIN_RATE = 0.5
#: A bucket saves up at most this many seconds of its rate (and at least one token): short bursts, no floods.
BURST_SECONDS = 0.05
#: CUBIC's multiplicative cut and its growth constant (requests/s per s³), botocore's values.
BETA = 0.7
SCALE = 0.4
#: Past this multiple of ``w_max`` without a 429, the adaptive limit is dropped.
RELEASE = 4.0
#: Rates are measured over this window (seconds), and over no less than ``MIN_SPAN`` of it.
WINDOW = 1.0
MIN_SPAN = 0.1
#: Fewer requests than this in the window say too little to judge the server's limit by what it accepted.
MIN_SAMPLES = 10


@dataclass(frozen=True)
class BudgetStats:
    """What a client has sent (``SigmaClient.stats``).

    ``sent``: requests put on the wire, retries included; ``retried``: of which retries; ``throttled``: answers
    429; ``rate``: the sending rate now allowed, in requests per second (None: no limit now);
    ``measured_rate``: requests sent over the last second.
    """

    sent: int
    retried: int
    throttled: int
    rate: float | None
    measured_rate: float


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; ``acquire()`` takes one, first come first served.

    Only the first waiter in line sleeps; when it leaves (with a token, or cancelled) it hands over to the next,
    so waiters are served in order, and a rate that changes while they wait is seen by the next one to wake.
    ``rate_at(now)``, when given, supplies the rate at each refill instead of a fixed one.
    """

    def __init__(
        self,
        rate: float | None = None,
        *,
        burst: float | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep | None = None,
        rate_at: Callable[[float], float] | None = None,
    ) -> None:
        if rate_at is None:
            if rate is None or not (rate > 0 and math.isfinite(rate)):
                raise ValueError(f"rate must be a positive number of requests per second, got {rate!r}")
            fixed = float(rate)
            rate_at = lambda _now: fixed  # noqa: E731 - the one-line form of a constant rate
        self._rate_at = rate_at
        self._burst = burst
        self._clock = clock
        self._sleep = sleep or asyncio.sleep
        self._stamp = clock()
        self._tokens = self._capacity(self._rate_at(self._stamp))
        self._line: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        """How many callers are waiting for a token."""
        return len(self._line)

    def drain(self) -> None:
        """Spend every saved token: the next caller waits for a fresh one."""
        self._refill()
        self._tokens = 0.0

    async def acquire(self) -> None:
        """Wait for a token, behind everyone already waiting."""
        if not self._line and self._take():
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._line.append(turn)
        try:
            if self._line[0] is not turn:
                await turn
            if not self._take():
                await self._sleep(self._time_to_token())
                # It slept for its token at the rate it was told: the token is its own, whatever the clock says.
                # (A test's sleep that does not move the clock then records waits instead of spinning.)
                self._refill()
                self._tokens = max(self._tokens, 1.0) - 1.0
        finally:
            first = self._line[0] is turn
            self._line.remove(turn)
            if first and self._line and not self._line[0].done():
                self._line[0].set_result(None)

    def _capacity(self, rate: float) -> float:
        return self._burst if self._burst is not None else max(1.0, rate * BURST_SECONDS)

    def _refill(self) -> float:
        now = self._clock()
        rate = self._rate_at(now)
        if math.isinf(rate):
            self._tokens = math.inf
        elif math.isinf(self._tokens):
            self._tokens = self._capacity(rate)  # a ceiling set on a client that had none: one burst's worth
        else:
            self._tokens = min(self._capacity(rate), self._tokens + max(0.0, now - self._stamp) * rate)
        self._stamp = now
        return rate

    def _take(self) -> bool:
        self._refill()
        if self._tokens >= 1.0 - 1e-9:  # float error must not cost a whole extra sleep
            self._tokens -= 1.0
            return True
        return False

    def _time_to_token(self) -> float:
        return max(0.0, 1.0 - self._tokens) / self._rate_at(self._clock())


class RequestBudget:
    """The client-wide budget: ``rate_limit`` (requests/s) as a ceiling, and with ``adaptive`` a rate that
    backs off on 429 and climbs back. Every request of the client passes it, retries included.

    The client's hot path reads ``engaged``: when False (no ceiling, no recent 429) it only calls ``note_send``.
    """

    def __init__(
        self,
        rate_limit: float | None = None,
        adaptive: bool = True,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep | None = None,
    ) -> None:
        if rate_limit is not None and (
            isinstance(rate_limit, bool) or not (rate_limit > 0 and math.isfinite(rate_limit))
        ):
            raise ValueError(f"rate_limit must be a positive number of requests per second, got {rate_limit!r}")
        self.ceiling = rate_limit
        self.adaptive = adaptive
        self.engaged = rate_limit is not None
        #: Counts of the cuts so far: a 429 is acted on only if its request was sent after the latest one.
        self.epoch = 0
        self.sent = 0
        self.throttled = 0
        self._clock = clock
        self._cubic: _Cubic | None = None
        self._sends = _RateMeter()
        self._throttles = _RateMeter()
        self._bucket = TokenBucket(clock=clock, sleep=sleep, rate_at=self.allowed_rate)

    def note_send(self) -> None:
        """Count a request sent on the fast path (nothing to wait for)."""
        self.sent += 1
        self._sends.record(self._clock())

    async def acquire(self) -> None:
        """Wait for this request's turn under the current rate, then count it as sent."""
        await self._bucket.acquire()
        self.sent += 1
        self._sends.record(self._clock())

    def on_throttle(self, epoch: int) -> None:
        """A 429 answered a request sent at ``epoch``: count it, and cut the rate once per round trip."""
        self.throttled += 1
        now = self._clock()
        self._throttles.record(now)
        if not self.adaptive or epoch != self.epoch:
            return
        sends, span = self._sends.window(now)
        throttles, _ = self._throttles.window(now)
        sent = sends / span
        w_max = min(self.allowed_rate(now), sent)
        if sends >= MIN_SAMPLES:
            # Enough requests to tell what the server let through: that, not what was sent, is its limit.
            w_max = min(w_max, (sends - throttles) / span)
        self._cubic = _Cubic(max(MIN_RATE, w_max), now)
        self.epoch += 1
        self.engaged = True
        # The server has no room left right now: tokens saved up at the old rate would only meet more 429s.
        self._bucket.drain()
        logger.debug("429: sending rate cut to %.1f/s (w_max %.1f/s, %.1f/s sent)", w_max * BETA, w_max, sent)

    def allowed_rate(self, now: float) -> float:
        """Requests per second allowed at ``now``: the ceiling, or the adaptive rate under it (inf: no limit)."""
        ceiling = self.ceiling if self.ceiling is not None else math.inf
        cubic = self._cubic
        if cubic is None:
            return ceiling
        rate = cubic.rate(now)
        if rate >= RELEASE * cubic.w_max:
            # Long past the old limit without a 429: the server's limit has gone or moved far up.
            self._cubic = None
            self.engaged = self.ceiling is not None
            return ceiling
        return max(MIN_RATE, min(ceiling, rate))

    def stats(self, retried: int = 0) -> BudgetStats:
        now = self._clock()
        rate = self.allowed_rate(now)
        return BudgetStats(
            sent=self.sent,
            retried=retried,
            throttled=self.throttled,
            rate=None if math.isinf(rate) else rate,
            measured_rate=self._sends.rate(now),
        )


class _Cubic:
    """CUBIC's rate curve after a cut at ``w_max``: ``SCALE * (t - K)**3 + w_max``, starting at
    ``BETA * w_max`` and back at ``w_max`` after ``K`` seconds."""

    __slots__ = ("k", "since", "w_max")

    def __init__(self, w_max: float, since: float) -> None:
        self.w_max = w_max
        self.since = since
        self.k = (w_max * (1 - BETA) / SCALE) ** (1 / 3)

    def rate(self, now: float) -> float:
        return SCALE * float(now - self.since - self.k) ** 3 + self.w_max


class _RateMeter:
    """Events per second over the last ``WINDOW`` seconds, from their times (bounded memory)."""

    __slots__ = ("_times",)

    def __init__(self, limit: int = 8192) -> None:
        self._times: deque[float] = deque(maxlen=limit)

    def record(self, now: float) -> None:
        self._times.append(now)

    def window(self, now: float) -> tuple[int, float]:
        """Events in the last window, and the seconds from the oldest of them to now: a burst after a quiet
        spell is measured at its own pace, not spread over the window (never under ``MIN_SPAN``)."""
        times = self._times
        cutoff = now - WINDOW
        while times and times[0] <= cutoff:
            times.popleft()
        if not times:
            return 0, WINDOW
        return len(times), max(now - times[0], MIN_SPAN)

    def rate(self, now: float) -> float:
        count, span = self.window(now)
        return count / span
