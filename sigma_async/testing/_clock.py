"""The emulator's clock: manual (moves only when told) or real time scaled by a speed factor."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

__all__ = ["Clock"]


class Clock:
    """Emulated time in UTC.

    In manual mode time stands still until ``advance`` moves it; in real-time mode it runs at ``speed`` times
    the wall clock (``speed=60`` makes a 30 s timeout pass in half a second), and ``advance`` still jumps ahead.
    Each ``advance`` runs the subscribed callbacks at once, so timers due by then fire before it returns.

    >>> clock = Clock(manual=True)
    >>> t0 = clock.now(); clock.advance(30); (clock.now() - t0).total_seconds()
    30.0
    """

    def __init__(self, *, start: datetime | None = None, speed: float = 1.0, manual: bool = False) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be a positive factor, got {speed!r}")
        if start is None:
            start = datetime.now(timezone.utc)
        elif start.tzinfo is None:
            raise ValueError("start must be timezone-aware (e.g. datetime(..., tzinfo=timezone.utc))")
        self._start = start.astimezone(timezone.utc)
        self._speed = float(speed)
        self._manual = manual
        self._offset = 0.0
        self._t0 = time.perf_counter()
        self._listeners: list[Callable[[], object]] = []

    @property
    def manual(self) -> bool:
        """True when time moves only through ``advance``."""
        return self._manual

    @property
    def speed(self) -> float:
        """Emulated seconds per wall-clock second in real-time mode."""
        return self._speed

    @property
    def start(self) -> datetime:
        """The emulated time at which the clock was created."""
        return self._start

    def elapsed(self) -> float:
        """Emulated seconds since ``start``."""
        if self._manual:
            return self._offset
        return self._offset + (time.perf_counter() - self._t0) * self._speed

    def now(self) -> datetime:
        """The current emulated time (UTC, aware)."""
        return self._start + timedelta(seconds=self.elapsed())

    def advance(self, seconds: float) -> datetime:
        """Jump ``seconds`` ahead and fire whatever fell due; returns the new time."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self._offset += seconds
        for listener in list(self._listeners):
            listener()
        return self.now()

    def wall_seconds(self, emulated: float) -> float | None:
        """How long ``emulated`` seconds take on the wall clock; None in manual mode (they never pass alone)."""
        if self._manual:
            return None
        return max(0.0, emulated) / self._speed

    def subscribe(self, listener: Callable[[], object]) -> None:
        """Call ``listener`` after every ``advance``."""
        self._listeners.append(listener)

    def __repr__(self) -> str:
        mode = "manual" if self._manual else f"speed={self._speed:g}"
        return f"Clock({mode}, now={self.now().isoformat()})"
