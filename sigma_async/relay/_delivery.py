"""How the relay rides out a failing destination: backoff between attempts, counts, and one word per outage.

A receiver answering 401 to every record for an hour is one misconfiguration, not ten thousand: it is logged at
WARNING when it starts (and again only if the failure changes, say from 401 to 503), and at INFO when the
destination accepts again, with how long it lasted and how many attempts failed. Each failed attempt is counted
by reason (``RelayStats.failures``, and the ``sigma_relay_delivery_failures_total`` metric).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Backoff", "Outage", "RelayStats", "describe", "failure_reason"]

logger = logging.getLogger("sigma_async")


@dataclass(frozen=True)
class Backoff:
    """Waits between attempts at one record (or one cursor save): ``initial`` doubling to ``maximum``, ±``jitter``."""

    initial: float = 0.5
    maximum: float = 30.0
    jitter: float = 0.2

    def delay(self, attempt: int, hint: float | None = None) -> float:
        """Seconds before attempt ``attempt + 1``; a destination's own ``Retry-After`` hint is a floor."""
        base = min(self.maximum, self.initial * 2.0 ** min(attempt - 1, 30))
        wait = base * random.uniform(1 - self.jitter, 1 + self.jitter)
        return max(wait, min(float(hint), self.maximum * 10)) if hint else wait


@dataclass
class RelayStats:
    """What the relay has done so far.

    ``delivered``: records the sink accepted; ``rejected``: records it refused for good (each sent to the
    dead-letter; ``dead_lettered`` counts those the dead-letter took); ``retried``: failed attempts, retried;
    ``failures``: those attempts by reason (``"401"``, ``"timeout"``, ...); ``outages``: spells of failure.
    """

    delivered: int = 0
    rejected: int = 0
    retried: int = 0
    dead_lettered: int = 0
    outages: int = 0
    failures: dict[str, int] = field(default_factory=dict)


class Outage:
    """One destination's spell of failures: WARNING when it starts and for each new reason, INFO when it ends."""

    def __init__(self, name: str, stats: RelayStats, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.stats = stats
        self._clock = clock
        self._since: float | None = None
        self._reasons: set[str] = set()
        self._attempts = 0

    def failed(self, exc: BaseException) -> None:
        reason = failure_reason(exc)
        self.stats.failures[reason] = self.stats.failures.get(reason, 0) + 1
        self._attempts += 1
        if self._since is None:
            self._since = self._clock()
            self.stats.outages += 1
        if reason in self._reasons:
            return
        self._reasons.add(reason)
        logger.warning(
            "relay: %s fails: %s; its records are held back and retried with backoff until it accepts them "
            "(nothing is skipped). Said once per outage.", self.name, describe(exc),
        )  # fmt: skip

    def passed(self) -> None:
        if self._since is None:
            return
        lasted = self._clock() - self._since
        logger.info("relay: %s accepts again, after %d failed attempts over %.1f s", self.name, self._attempts, lasted)
        self._since, self._reasons, self._attempts = None, set(), 0


def failure_reason(exc: BaseException) -> str:
    """A short name for a failed attempt: the HTTP status, ``timeout``, ``connection``, or the error's type."""
    reason = getattr(exc, "reason", None)
    if isinstance(reason, str) and reason:
        return reason
    if isinstance(exc, TimeoutError):
        return "timeout"
    return type(exc).__name__


def describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
