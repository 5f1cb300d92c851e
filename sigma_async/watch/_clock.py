"""The one clock every watch runs on: monotonic seconds for due times, the wall clock for what trackers are told.

Injected, as ``sleep`` is beside ``_request`` in gidgethub: a test can run a watch on virtual time, and a
300 s resync then takes no time at all.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Protocol

__all__ = ["RealClock", "Timer", "WatchClock"]


class Timer(Protocol):
    def cancel(self) -> None: ...


class WatchClock(Protocol):
    """What the scheduler asks of time."""

    def now(self) -> float:
        """Monotonic seconds: when things are due."""
        ...

    def wall(self) -> datetime:
        """The time of day (UTC): what a poll is dated by, for its tracker."""
        ...

    def call_at(self, when: float, callback: Callable[[], object]) -> Timer:
        """Call ``callback`` once ``now()`` has reached ``when``."""
        ...


class RealClock:
    """Real time, on the running event loop's timers."""

    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> datetime:
        return datetime.now(timezone.utc)

    def call_at(self, when: float, callback: Callable[[], object]) -> Timer:
        return asyncio.get_running_loop().call_later(max(0.0, when - time.monotonic()), callback)
