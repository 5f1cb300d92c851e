"""The delivery fence: what a replica knows, by its own clock, about the leases it holds.

A lease is the holder's for ``ttl`` seconds after its last write landed, as the other replicas judge it on the
NATS server's clock. The holder cannot see that clock, but it knows when it *sent* each write: the write landed
after that, so counting from the send errs on the safe side. ``holds(key)`` is True only while the last write of
``key``'s lease was sent less than ``ttl - margin`` ago. The margin covers a delivery that starts just inside the
limit and lands a moment later, and clocks that run at slightly different rates. A process that was stopped
(SIGSTOP, a frozen VM) wakes up with every lease past that limit, so it sends nothing before renewing.
"""

from __future__ import annotations

import math
import time
from typing import Protocol

import anyio

__all__ = ["LeaseBook", "LeaseClock", "SystemClock"]


class LeaseClock(Protocol):
    """The local clock the lease loop paces itself by; tests substitute one that can be paused."""

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """``time.monotonic`` and ``anyio.sleep``."""

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


class LeaseBook:
    """The leases this replica holds: each one's revision and when its last write was sent (local monotonic time).

    ``doubted`` collects keys that ``holds`` answered False for while the book still lists them: their watch
    must be stopped and, if the lease turns out to be still ours, resumed from the saved cursor.
    """

    def __init__(self, ttl: float, clock: LeaseClock, *, margin: float | None = None) -> None:
        self.ttl = ttl
        self.margin = ttl / 4 if margin is None else margin
        self.clock = clock
        self.revisions: dict[str, int] = {}
        self.sent: dict[str, float] = {}
        self.doubted: set[str] = set()

    def holds(self, key: str) -> bool:
        """Whether ``key``'s lease is certainly still ours now; False also marks it ``doubted``."""
        if key not in self.revisions:
            return False
        if self.clock.monotonic() - self.sent.get(key, -math.inf) < self.ttl - self.margin:
            return True
        self.doubted.add(key)
        return False

    def fresh(self, key: str) -> bool:
        """``holds`` without marking anything."""
        return key in self.revisions and self.clock.monotonic() - self.sent.get(key, -math.inf) < self.ttl - self.margin

    def stale(self) -> set[str]:
        """Keys held whose lease may have expired for the others, and those doubted since last asked."""
        found = {key for key in self.revisions if not self.fresh(key)} | self.doubted
        self.doubted = set()
        return found

    def due(self, every: float) -> list[str]:
        """Keys whose last write was sent at least ``every`` seconds ago."""
        now = self.clock.monotonic()
        return [key for key in self.revisions if now - self.sent.get(key, -math.inf) >= every]

    def wrote(self, key: str, revision: int, sent: float) -> None:
        """A write of ``key``'s lease, sent at ``sent``, landed as ``revision``."""
        self.revisions[key] = revision
        self.sent[key] = sent

    def adopt(self, key: str, revision: int) -> None:
        """Ours by its token, but when it was written is unknown: held, not yet trusted until renewed."""
        self.revisions[key] = revision
        self.sent[key] = -math.inf

    def drop(self, key: str) -> int | None:
        self.sent.pop(key, None)
        return self.revisions.pop(key, None)
