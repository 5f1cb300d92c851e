"""Server-side throttling for the emulator: past ``rate`` requests a second, answer 429, as a real API would."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

__all__ = ["Throttle"]


class Throttle:
    """A limit on every request the emulator receives (``emu.throttling``): a token bucket or a sliding window.

    Off until ``set(rate)``. Then ``rate`` requests a second are let through, with bursts of up to ``burst``
    (default: a tenth of a second's worth, at least one); the rest are refused, answered 429 by the app, with
    ``Retry-After: retry_after`` when that is set. With ``window=W`` the limit is a sliding window instead, as
    many APIs count: at most ``rate * W`` requests in any ``W`` seconds, so a burst that fills the window is
    followed by refusals until it has aged out of it. ``admitted`` and ``refused`` count the requests judged.

    >>> emu.throttle(100)                      # 429 past 100 requests/s (token bucket, bursts of 10)
    >>> emu.throttle(100, window=1)            # 429 past 100 requests in any one second
    >>> emu.throttle(50, retry_after=1)        # ... and ask clients to come back in a second
    >>> emu.throttle(None)                     # off again
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.rate: float | None = None
        self.burst = 1.0
        self.window: float | None = None
        self.retry_after: float | None = None
        self.admitted = 0
        self.refused = 0
        self._tokens = 0.0
        self._stamp = 0.0
        self._recent: deque[float] = deque()  # admitted times within the sliding window
        self._room = 1

    def set(
        self,
        rate: float | None,
        *,
        burst: float | None = None,
        window: float | None = None,
        retry_after: float | None = None,
    ) -> None:
        """Throttle at ``rate`` requests per second (None: off); counts start again."""
        if rate is not None and not (rate > 0 and math.isfinite(rate)):
            raise ValueError(f"rate must be a positive number of requests per second, got {rate!r}")
        if burst is not None and burst < 1:
            raise ValueError("burst must be at least one request")
        if window is not None:
            if not (window > 0 and math.isfinite(window)):
                raise ValueError(f"window must be a positive number of seconds, got {window!r}")
            if burst is not None:
                raise ValueError("burst is for the token bucket; a sliding window's burst is its whole window")
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, (rate or 0) / 10)
        self.window = window
        self.retry_after = retry_after
        self.admitted = self.refused = 0
        self._tokens = self.burst
        self._stamp = self._clock()
        self._recent.clear()
        self._room = max(1, math.floor((rate or 0) * (window or 0) + 1e-9))

    def admit(self) -> bool:
        """Whether the request arriving now is let through (always, when off)."""
        if self.rate is None:
            return True
        now = self._clock()
        if self.window is not None:
            ok = self._admit_in_window(now)
        else:
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            ok = self._tokens >= 1.0
            if ok:
                self._tokens -= 1.0
        if ok:
            self.admitted += 1
        else:
            self.refused += 1
        return ok

    @property
    def refused_share(self) -> float:
        """The share of requests judged that were refused (0 when none were)."""
        judged = self.admitted + self.refused
        return self.refused / judged if judged else 0.0

    def _admit_in_window(self, now: float) -> bool:
        recent = self._recent
        assert self.window is not None
        cutoff = now - self.window
        while recent and recent[0] <= cutoff:
            recent.popleft()
        if len(recent) >= self._room:
            return False  # refused requests do not count against the window, as most servers count
        recent.append(now)
        return True
