"""The relay's seams: what a sink, a cursor store, an ownership policy and an observer must do.

The runner (``_relay.py``) depends only on these protocols, so a sink, a store or a replica scheme can be
written outside this package:

>>> class PrintSink:
...     async def deliver(self, record: bytes, transition: Transition) -> Outcome:
...         print(record.decode())
...         return ACCEPTED
...     async def aclose(self) -> None:
...         pass

Watch keys name what is watched: ``"session:<id>"`` and ``"channel:<id>"`` (``session_key``, ``channel_key``).
Cursor store keys are bare session ids; a session whose ``Ended`` was delivered keeps ``DONE`` in place of its
cursor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol, runtime_checkable

import anyio
from anyio.abc import TaskStatus

from ..transitions import Transition

__all__ = [
    "ACCEPTED",
    "DONE",
    "Claims",
    "CursorStore",
    "Observer",
    "Outcome",
    "OwnEverything",
    "Ownership",
    "SetupError",
    "Sink",
    "StaleCursorError",
    "StoreLostError",
    "channel_key",
    "parse_key",
    "session_key",
]


@dataclass(frozen=True)
class Outcome:
    """What a sink did with a record: accepted it, or rejected it for good.

    A rejection carries ``detail`` (why, for the log) and, from a webhook, the receiver's ``status`` and the start
    of its ``answer`` (at most 200 bytes), which go to the dead-letter with the record.
    """

    accepted: bool
    detail: str = ""
    status: int | None = None
    answer: str = ""

    @classmethod
    def rejected(cls, detail: str, *, status: int | None = None, answer: str = "") -> Outcome:
        return cls(False, detail, status, answer)


#: The outcome of every successful delivery.
ACCEPTED: Final = Outcome(True)

#: What a store holds in place of a session's cursor once its ``Ended`` was delivered: the session is done, for
#: this relay and for every replica. Small, so that the store's size follows the live sessions, not the history.
DONE: Final = "done"


class SetupError(Exception):
    """The relay cannot run as configured: a NATS server unreachable at start, a stream that does not take the
    relay's subjects. The message says what to change; the command exits 1 with it."""


class StaleCursorError(Exception):
    """A cursor save lost its compare-and-set: another replica saved that session's cursor since this one read it.

    The save is not retried; the runner stops the session's watch and resumes it from the store.
    """


class StoreLostError(SetupError):
    """The store itself is gone (its bucket was deleted while the relay ran): nothing can be saved any more.

    Fatal: the relay stops after the deliveries in flight and ``run()`` raises it.
    """


@runtime_checkable
class Sink(Protocol):
    """Where records go. One method does the work; the runner calls it for one session at a time, in order.

    ``deliver(record, transition)``: ``record`` is the JSON to send (``msgspec.json.encode(transition)``, which
    carries ``transition.id``); ``transition`` is there for routing (subject, headers), not to be re-encoded.
    - return ``ACCEPTED`` once the destination holds the record (the runner then saves the session's cursor);
    - return ``Outcome.rejected(detail)`` when the destination refused it for good (it is logged, counted and
      skipped; the session goes on);
    - raise any ``Exception`` when it may work later: the runner retries the same record with backoff, for
      ever, and holds back that session's later records meanwhile. Never swallow cancellation.
    Calls for different sessions may overlap, so a sink must be safe under concurrent ``deliver`` calls.
    ``aclose()`` releases connections and files; the runner calls it once, after the last ``deliver``.
    """

    async def deliver(self, record: bytes, transition: Transition) -> Outcome: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class CursorStore(Protocol):
    """Where each session's cursor is kept between runs (keys are session ids, values opaque cursors).

    - ``load(key)``: the cursor last saved for that session, or None.
    - ``load_all()``: every saved cursor (used to resume sessions reached through a channel).
    - ``save(key, cursor)``: durable when it returns: a crash right after must not lose it. Called only after the
      sink accepted (or dead-lettered) the transition that cursor follows, and for one session never
      concurrently. ``cursor`` may be ``DONE``: the session's ``Ended`` went out. Raising means the save failed;
      the runner retries it with backoff before going on with that session, except for ``StaleCursorError`` (a
      shared store's compare-and-set lost: the runner resumes that session from the store) and
      ``StoreLostError`` (fatal).
    - ``drop(key)``: forget the session altogether (a done session that left the watch list, or one reached
      through a channel once its ``Ended`` went out).
    - ``aclose()``: flush and release; called once, after the last ``save``.
    """

    async def load(self, key: str) -> str | None: ...

    async def load_all(self) -> dict[str, str]: ...

    async def save(self, key: str, cursor: str) -> None: ...

    async def drop(self, key: str) -> None: ...

    async def aclose(self) -> None: ...


class Claims(Protocol):
    """The runner's side of ownership: what an ``Ownership`` calls as it takes and gives up watch keys."""

    async def acquire(self, key: str) -> None:
        """Start watching ``key`` here, resuming from the store's cursors. Idempotent."""

    async def release(self, key: str, *, settle: float = 0.0) -> None:
        """Stop watching ``key`` here: the current delivery finishes, queued records are dropped unsaved (the next
        owner resumes from the saved cursor). With ``settle``, returns once that delivery's cursor is saved (or
        after ``settle`` seconds): call it before giving the key up, so that the next owner starts after it.
        Idempotent."""


class Ownership(Protocol):
    """Decides which watch keys this process watches now; the default, ``OwnEverything``, owns all of them.

    ``run(keys, claims, task_status=...)`` runs for the life of the relay, as a task the runner starts with
    ``TaskGroup.start``: it calls ``claims.acquire(key)`` / ``claims.release(key)`` as it takes and loses keys
    (only keys from ``keys``), calls ``task_status.started()`` once its first division is done (the runner
    waits for that before it reports ready), and releases what it holds when cancelled.

    ``holds(key)`` is asked right before every delivery attempt, and must answer at once, from what this process
    knows without asking anyone: False when it cannot be sure ``key`` is still its own (its lease was not renewed
    recently enough by its own clock). The record is then not sent, the key's queued records are dropped, and the
    ownership is expected to stop the watch (``claims.release``) and to resume it if the key turns out to be
    still its own.

    ``fence(key)`` is asked right before a cursor of a session watched under ``key`` is saved: False means this
    process no longer owns ``key`` (another replica took it), so the cursor is not saved and the key's queued
    records are dropped. It must not wait long: it sits between a delivery and the next.

    ``finish(key)``: the session watched under ``key`` (a ``session:`` key) is done: its ``Ended`` went out and
    the store holds ``DONE`` for it. Its lease is given up and never taken again, by any replica.

    ``stays_open``: False if every key is acquired before ``started()`` and none later, so the relay may exit
    once those watches have ended; True if keys can arrive later (replicas), so it runs until stopped, or until
    ``run`` returns by itself: that means every key is done, and the relay then exits.
    """

    stays_open: bool

    async def run(self, keys: Sequence[str], claims: Claims, *, task_status: TaskStatus[None]) -> None: ...

    def holds(self, key: str) -> bool: ...

    async def fence(self, key: str) -> bool: ...

    async def finish(self, key: str) -> None: ...


class OwnEverything:
    """One process, no replicas: every key is acquired at once and never fenced."""

    stays_open = False

    async def run(
        self, keys: Sequence[str], claims: Claims, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        for key in keys:
            await claims.acquire(key)
        task_status.started()

    def holds(self, key: str) -> bool:
        return True

    async def fence(self, key: str) -> bool:
        return True

    async def finish(self, key: str) -> None:
        pass


class Observer(Protocol):
    """Told of every delivery's fate, for metrics; every method must be quick and must not raise.

    ``lag`` is seconds from the transition's ``at`` to its acceptance.
    """

    def delivered(self, transition: Transition, lag: float) -> None: ...

    def rejected(self, transition: Transition, detail: str) -> None: ...

    def retried(self, transition: Transition, error: BaseException) -> None: ...


def session_key(session_id: str) -> str:
    """The watch key of a session watched directly."""
    return f"session:{session_id}"


def channel_key(channel_id: str) -> str:
    """The watch key of a channel, followed across its sessions."""
    return f"channel:{channel_id}"


def parse_key(key: str) -> tuple[str, str]:
    """``"session:abc"`` -> ``("session", "abc")``; ValueError for anything else."""
    kind, sep, ident = key.partition(":")
    if not sep or kind not in ("session", "channel") or not ident:
        raise ValueError(f"not a watch key (session:<id> or channel:<id>): {key!r}")
    return kind, ident
