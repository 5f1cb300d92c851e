"""The client-wide request budget: a fair token bucket under an optional ceiling, and an adaptive rate that
backs off when the server answers 429 and climbs back (CUBIC, as in AWS SDKs' adaptive retry mode).

How the adaptive rate moves, and where it departs from botocore's ``ClientRateLimiter``:

- Until the first 429 nothing is limited (unless a ceiling is set): calls take the no-limit fast path.
- On a 429 the rate is cut to ``BETA`` times ``w_max``, the rate the server was *accepting* (requests sent
  minus requests throttled over the last second), not the rate sent: a client sending at ten times the
  server's limit lands just under that limit in one cut, where a cut of the send rate takes several.
- At most one cut per round trip: a 429 answering a request sent before the last cut says nothing about the new
  rate, so it is counted but does not cut again. botocore cuts on every 429 of a burst and collapses the rate.
- ``w_max`` is never below what the server showed it lets through: the most answers other than 429 within one
  second over the last ``SHOWN_MEMORY`` seconds. A server counting over a sliding window refuses everything for
  up to a second after a burst filled it, whatever the client sends meanwhile; a cut on each of those 429s in
  turn took the rate from 1,000 to 3 requests/s in 1.25 s.
- A 429 to a request sent at that floor means the server is shut: the budget sends probes only (``PROBE`` times
  ``w_max``) until one is let through, then goes on from the floor. It neither climbs nor lets go meanwhile.
- Near a limit found before and still there, the cut is ``BETA_KNOWN``: it stops the 429s as well, and keeps the
  rate nearer the limit than a full cut and the climb back from it.
- Between cuts the rate follows the CUBIC curve: back up to ``w_max`` quickly, flat near it, then probing
  above. Once it is ``RELEASE`` times ``w_max`` and no 429 has come for ``QUIET`` seconds, the server's limit
  has gone: the budget lets go. It never lets go while 429s still come.
- Waiters are served first come, first served (botocore wakes threads in no set order), so many watchers on one
  client share a short budget evenly. The first in line reads the rate again at least every ``STEP`` seconds.
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
#: The longest a waiter sleeps before it reads the rate again (seconds).
STEP = 0.1
#: A bucket saves up at most this many seconds of its rate (and at least one token): short bursts, no floods.
BURST_SECONDS = 0.05
#: CUBIC's multiplicative cut and its growth constant (requests/s per s³), botocore's values.
BETA = 0.7
SCALE = 0.4
#: The cut when a 429 comes near a limit found before that is still there (within ``KNOWN`` of it).
BETA_KNOWN = 0.85
KNOWN = 0.9
#: A 429 to a request sent at no more than the floor over this factor means the server is shut, not the rate high.
FLOOR_MARGIN = 0.9
#: While the server is shut, probes at this share of ``w_max``: enough to see it open again within a fraction of a
#: second, few enough that the 429s meanwhile cost little. Halved each second it stays shut past the first.
PROBE = 0.2
#: Shut again this many times in a row right after a probe got through, the floor is taken to be wrong.
RELAPSES = 2
#: Past this multiple of ``w_max``, and ``QUIET`` seconds after the last 429, the adaptive limit is dropped.
RELEASE = 4.0
QUIET = 2.0
#: How long the most the server let through in one second is remembered as a floor for cuts (seconds): longer
#: than a sliding window of a second stays shut after a burst, short enough to follow a limit that drops.
SHOWN_MEMORY = 2.0
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
                await self._wait_for_token()
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

    async def _wait_for_token(self) -> None:
        # Sleeps of at most ``STEP``, the rate read again after each: a rate that rises meanwhile (the server open
        # again, the curve climbing) is seen within a step, not after a long sleep told at the old rate.
        owed = 1.0 - self._tokens
        while True:
            rate = self._rate_at(self._clock())
            if math.isinf(rate):
                break
            step = min(STEP, owed / rate)
            await self._sleep(step)
            # The time slept earns tokens at the rate it was told, whatever the clock says: a test's sleep that does
            # not move the clock then records waits instead of spinning.
            owed -= step * rate
            self._refill()
            if owed <= 1e-9 or self._tokens >= 1.0 - 1e-9:
                break
        self._refill()
        self._tokens = max(self._tokens, 1.0) - 1.0


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
        self._answers = _RateMeter()  # answers other than 429: requests the server let through
        self._last_throttle = -math.inf
        self._shown = 0  # the most answers (not 429) seen within one second, lately, and when
        self._shown_at = -math.inf
        self._shut_since: float | None = None  # since when the server has been shut (probes only)
        self._shut_epoch = 0
        self._reopened_at = -math.inf
        self._relapses = 0  # shut again, in a row, within a second of opening
        self._shown_from = -math.inf  # answers before this do not count towards what the server showed
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

    def note_answer(self, epoch: int) -> None:
        """Count an answer other than 429 to a request sent at ``epoch``: the server let it through."""
        now = self._clock()
        self._answers.record(now)
        if self._shut_since is not None and epoch >= self._shut_epoch and self._cubic is not None:
            self._shut_since = None  # a probe let through: open again, on from where it shut
            self._reopened_at = now
            self._cubic = _Cubic(self._cubic.w_max, now, start=self._cubic.start)

    def on_throttle(self, epoch: int) -> None:
        """A 429 answered a request sent at ``epoch``: count it, and cut the rate at most once per round trip."""
        self.throttled += 1
        now = self._clock()
        self._throttles.record(now)
        self._last_throttle = now
        shown = self._shown_rate(now)
        if not self.adaptive or epoch != self.epoch or self._shut_since is not None:
            return  # sent before the last cut: it says nothing of the new rate (or a probe refused: still shut)
        allowed = self.allowed_rate(now)
        sends, span = self._sends.window(now)
        throttles, _ = self._throttles.window(now)
        sent = sends / span
        w_max = min(allowed, sent)
        if sends >= MIN_SAMPLES:
            # Enough requests to tell what the server let through: that, not what was sent, is its limit.
            w_max = min(w_max, (sends - throttles) / span)
        relapsed = now - self._reopened_at <= WINDOW
        self._relapses = self._relapses + 1 if relapsed else 0
        if self._relapses >= RELAPSES:
            # Refused again right after the server let a probe through, and again: not shut, but the floor is
            # too high (the limit dropped, or a large bucket's burst made it look higher). Cut below it, and
            # measure anew. Once could be a window that empties unevenly: that only shuts again.
            self._shown_from, self._relapses = self._reopened_at, 0
            self._shown = 0
            shown = self._shown_rate(now)
        # Never below what the server showed it lets through in a second (see the module's docstring).
        w_max = max(MIN_RATE, w_max, shown)
        old = self._cubic
        near = old is not None and KNOWN * old.w_max <= min(w_max, allowed) and KNOWN * w_max <= old.w_max
        beta = BETA_KNOWN if near else BETA
        rate = beta * w_max
        if rate >= FLOOR_MARGIN * allowed:
            # Refused at (or under) the floor: the server is shut, its window still full from earlier. Probes
            # only until it lets one through (``note_answer``), then on from here.
            self._cubic = _Cubic(w_max, now, start=min(rate, allowed))
            self._shut_since = now
            self._shut_epoch = self.epoch + 1
        else:
            self._cubic = _Cubic(w_max, now, start=rate)
        self.epoch += 1
        self.engaged = True
        # The server has no room left right now: tokens saved up at the old rate would only meet more 429s.
        self._bucket.drain()
        logger.debug(
            "429: sending rate %s %.1f/s (w_max %.1f/s: %.1f/s sent, %.1f/s shown)",
            "shut, probing, then" if self._shut_since is not None else "cut to", self._cubic.start, w_max, sent,
            shown,
        )

    def allowed_rate(self, now: float) -> float:
        """Requests per second allowed at ``now``: the ceiling, or the adaptive rate under it (inf: no limit)."""
        ceiling = self.ceiling if self.ceiling is not None else math.inf
        cubic = self._cubic
        if cubic is None:
            return ceiling
        if self._shut_since is not None:
            # Probes, halved each second past the first (as retries back off): a window of a second shuts a
            # server for at most that; one shut for longer is not asked many times a second meanwhile.
            fade: float = 0.5 ** max(0.0, (now - self._shut_since) / WINDOW - 1.0)
            return max(MIN_RATE, min(ceiling, PROBE * cubic.w_max * fade))
        rate = cubic.rate(now)
        if rate >= RELEASE * cubic.w_max and now - self._last_throttle >= QUIET:
            # Long past the old limit without a 429: the server's limit has gone or moved far up.
            self._cubic = None
            self.engaged = self.ceiling is not None
            return ceiling
        return max(MIN_RATE, min(ceiling, rate))

    def _shown_rate(self, now: float) -> float:
        """The most answers (not 429) within one second over the last ``SHOWN_MEMORY`` seconds, per second."""
        answers, _ = self._answers.window(now)
        if self._shown_from > now - WINDOW:
            answers = self._answers.count_after(self._shown_from)
        if answers >= self._shown or now - self._shown_at > SHOWN_MEMORY:
            self._shown, self._shown_at = answers, now
        return self._shown / WINDOW

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
    """CUBIC's rate curve after a cut at ``w_max``: ``SCALE * (t - K)**3 + w_max``, starting at ``start``
    (``BETA * w_max`` unless told) and back at ``w_max`` after ``K`` seconds."""

    __slots__ = ("k", "since", "start", "w_max")

    def __init__(self, w_max: float, since: float, start: float | None = None) -> None:
        self.w_max = w_max
        self.since = since
        self.start = w_max * BETA if start is None else start
        self.k = (max(0.0, w_max - self.start) / SCALE) ** (1 / 3)

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

    def count_after(self, moment: float) -> int:
        """Events recorded after ``moment`` (the latest first: cheap for a recent one)."""
        count = 0
        for at in reversed(self._times):
            if at <= moment:
                break
            count += 1
        return count
