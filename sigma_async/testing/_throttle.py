"""Server-side throttling for the emulator: past ``rate`` requests a second, answer 429, as a real API would."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

__all__ = ["Throttle"]


class Throttle:
    """A token bucket over every request the emulator receives (``emu.throttling``).

    Off until ``set(rate)``. Then ``rate`` requests a second are let through, with bursts of up to ``burst``
    (default: a tenth of a second's worth, at least one); the rest are refused, answered 429 by the app, with
    ``Retry-After: retry_after`` when that is set. ``admitted`` and ``refused`` count the requests judged.

    >>> emu.throttle(100)                      # 429 past 100 requests/s
    >>> emu.throttle(50, retry_after=1)        # ... and ask clients to come back in a second
    >>> emu.throttle(None)                     # off again
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.rate: float | None = None
        self.burst = 1.0
        self.retry_after: float | None = None
        self.admitted = 0
        self.refused = 0
        self._tokens = 0.0
        self._stamp = 0.0

    def set(self, rate: float | None, *, burst: float | None = None, retry_after: float | None = None) -> None:
        """Throttle at ``rate`` requests per second (None: off); counts start again."""
        if rate is not None and not (rate > 0 and math.isfinite(rate)):
            raise ValueError(f"rate must be a positive number of requests per second, got {rate!r}")
        if burst is not None and burst < 1:
            raise ValueError("burst must be at least one request")
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, (rate or 0) / 10)
        self.retry_after = retry_after
        self.admitted = self.refused = 0
        self._tokens = self.burst
        self._stamp = self._clock()

    def admit(self) -> bool:
        """Whether the request arriving now is let through (always, when off)."""
        if self.rate is None:
            return True
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            self.admitted += 1
            return True
        self.refused += 1
        return False

    @property
    def refused_share(self) -> float:
        """The share of requests judged that were refused (0 when none were)."""
        judged = self.admitted + self.refused
        return self.refused / judged if judged else 0.0
