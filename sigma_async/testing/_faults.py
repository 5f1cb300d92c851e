"""Fault injection per route, and the journal of every request the emulator received."""

from __future__ import annotations

import random
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import msgspec

__all__ = ["ROUTES", "Fault", "FaultPlan", "FaultRule", "Journal", "JournalEntry"]

#: Every route of the emulated API, as ``faults`` and ``journal`` name them. ``"*"`` in ``faults`` means all.
ROUTES = (
    "POST /channels",
    "GET /channels/{id}",
    "PATCH /channels/{id}/start",
    "DELETE /channels/{id}/stop",
    "DELETE /channels/{id}",
    "GET /sessions",
    "GET /sessions/{id}/status",
    "GET /events",
)
ANY_ROUTE = "*"


@dataclass(frozen=True)
class Fault:
    """How to misbehave on one request.

    - ``status``: answer this status with a JSON error body (and ``Retry-After`` when ``retry_after`` is set:
      seconds as a number, or any string such as an HTTP date, sent as is).
    - ``drop``: close the connection without an answer.
    - ``malformed``: answer 200 with a body that is not valid JSON.
    - ``body`` / ``content_type``: answer exactly this body instead of the JSON error (with ``status``, or 200).
    - ``latency``: wait this many real seconds first (alone, it only slows the answer down).
    - ``after``: perform the operation first, then misbehave: the server acted but the client cannot know.

    >>> Fault(status=503, retry_after=1)          # busy, come back in a second
    >>> Fault(drop=True, after=True)              # the channel is created, the answer is lost
    """

    status: int | None = None
    retry_after: float | str | None = None
    latency: float = 0.0
    drop: bool = False
    malformed: bool = False
    body: bytes | str | None = None
    content_type: str | None = None
    message: str | None = None
    after: bool = False

    def __post_init__(self) -> None:
        if self.status is not None and not 100 <= self.status <= 599:
            raise ValueError(f"status must be an HTTP status code, got {self.status!r}")
        if self.latency < 0:
            raise ValueError("latency must not be negative")
        if sum((self.drop, self.malformed, self.status is not None)) > 1:
            raise ValueError("choose one of status=, drop=True or malformed=True")

    @property
    def answers(self) -> bool:
        """Whether this fault replaces the answer (as opposed to only delaying it)."""
        return self.drop or self.malformed or self.status is not None or self.body is not None


@dataclass
class FaultRule:
    """A fault armed on a route: fired ``remaining`` more times (None: unlimited), each with ``probability``,
    on requests for which ``when`` (if given) is true."""

    route: str
    fault: Fault
    remaining: int | None
    probability: float | None = None
    rng: random.Random | None = None
    fired: int = 0
    when: Callable[[JournalEntry], bool] | None = None

    def draw(self, request: JournalEntry | None = None) -> bool:
        if self.remaining is not None and self.remaining <= 0:
            return False
        if self.when is not None and (request is None or not self.when(request)):
            return False
        if self.probability is not None:
            assert self.rng is not None
            if self.rng.random() >= self.probability:
                return False
        self.fired += 1
        if self.remaining is not None:
            self.remaining -= 1
        return True


class FaultPlan:
    """The faults armed on the emulator (``emu.faults``).

    Rules are tried in the order they were added; the first one that fires decides the request. A rule without
    ``probability`` fires on the next ``times`` requests (default 1, ``"always"`` for every one); one with
    ``probability`` fires on each request with that chance, from its own seeded generator, at most ``times`` times
    (default: without limit).

    >>> emu.faults.add("POST /channels", Fault(status=503, retry_after=0.1), times=2)
    >>> emu.faults.add("GET /events", Fault(status=500), times="always")
    >>> emu.faults.add("*", Fault(drop=True), probability=0.2, seed=7)
    >>> emu.faults.add("POST /channels", Fault(status=400, message="bad name"), times="always",
    ...                when=lambda request: request.json()["name"] == "bad")   # only the requests it matches
    """

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rules: list[FaultRule] = []
        self._rng = rng or random.Random()

    def add(
        self,
        route: str,
        fault: Fault,
        *,
        times: int | Literal["always"] | None = None,
        probability: float | None = None,
        seed: int | None = None,
        when: Callable[[JournalEntry], bool] | None = None,
    ) -> FaultRule:
        """Arm ``fault`` on ``route`` (one of ``ROUTES`` or ``"*"``); returns the rule, whose ``fired`` counts hits.

        ``when(request)``, given the request as the journal records it, limits the rule to requests it is true for.
        """
        if route != ANY_ROUTE and route not in ROUTES:
            raise ValueError(f"unknown route {route!r}; routes are {', '.join(ROUTES)} or '*'")
        if isinstance(times, int) and times < 0:
            raise ValueError("times must not be negative")
        if times is None:
            times = 1 if probability is None else "always"
        remaining = None if times == "always" else times
        rng = None
        if probability is not None:
            if not 0.0 <= probability <= 1.0:
                raise ValueError("probability must be between 0 and 1")
            rng = random.Random(seed if seed is not None else self._rng.getrandbits(64))
        rule = FaultRule(route, fault, remaining, probability, rng, when=when)
        self._rules.append(rule)
        return rule

    def clear(self, route: str | None = None) -> None:
        """Disarm every rule, or only those added for ``route``."""
        self._rules = [r for r in self._rules if route is not None and r.route != route]

    def pick(self, route: str, request: JournalEntry | None = None) -> Fault | None:
        """The fault for the next request on ``route``, consuming it; None to answer normally."""
        for rule in self._rules:
            if (rule.route == route or rule.route == ANY_ROUTE) and rule.draw(request):
                return rule.fault
        return None

    @property
    def rules(self) -> list[FaultRule]:
        return list(self._rules)

    @property
    def pending(self) -> int:
        """How many counted scripted faults are still to fire (``"always"`` and random rules are not counted)."""
        return sum(r.remaining or 0 for r in self._rules if r.probability is None)

    def __len__(self) -> int:
        return len(self._rules)


@dataclass
class JournalEntry:
    """One request as the emulator saw it. ``status`` is None while it is handled, and for dropped ones."""

    method: str
    path: str
    route: str | None
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    at: datetime
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    status: int | None = None
    fault: Fault | None = None

    def json(self) -> Any:
        """The request body decoded as JSON."""
        return msgspec.json.decode(self.body)


class Journal:
    """Every request received (``emu.journal``), newest last; keeps the last ``limit`` in full, counts all."""

    def __init__(self, limit: int = 10_000) -> None:
        self._entries: deque[JournalEntry] = deque(maxlen=limit)
        self._counts: Counter[str | None] = Counter()
        self._total = 0
        self.in_flight = 0
        self.max_in_flight = 0

    def begin(self, entry: JournalEntry) -> JournalEntry:
        self._entries.append(entry)
        self._counts[entry.route] += 1
        self._total += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        return entry

    def end(self, entry: JournalEntry, status: int | None) -> None:
        entry.status = status
        entry.finished = time.monotonic()
        self.in_flight -= 1

    def count(self, route: str | None = None) -> int:
        """Requests received on ``route`` (one of ``ROUTES``), or in all."""
        return self._total if route is None else self._counts[route]

    def entries(self, route: str | None = None) -> list[JournalEntry]:
        """The recorded requests, oldest first, optionally of one route."""
        return [e for e in self._entries if route is None or e.route == route]

    def last(self, route: str | None = None) -> JournalEntry:
        for entry in reversed(self._entries):
            if route is None or entry.route == route:
                return entry
        raise LookupError(f"no request recorded for {route or 'any route'}")

    def clear(self) -> None:
        """Forget what was recorded; ``max_in_flight`` restarts from the requests in flight now."""
        self._entries.clear()
        self._counts.clear()
        self._total = 0
        self.max_in_flight = self.in_flight

    def __len__(self) -> int:
        return self._total

    def __iter__(self) -> Iterator[JournalEntry]:
        return iter(list(self._entries))
