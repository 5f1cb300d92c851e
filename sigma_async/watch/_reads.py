"""The reads a poll makes, and what a watch does when they fail: paging back to a mark, backing off, giving up."""

from __future__ import annotations

import contextlib
import enum
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

import anyio

from .._observe import FailureBox, watching_failures
from .._paging import STALE_PAGE_LIMIT
from ..errors import (
    APIConnectionError,
    APIStatusError,
    AuthenticationError,
    NotFoundError,
    PermissionDeniedError,
    ResponseDecodeError,
    SigmaError,
    WatchError,
)
from ..models import Event, Page
from ._api import WatchClient
from ._tracker import SessionTracker

__all__ = [
    "FAILED",
    "FIRST_PAGE_SIZE",
    "INCREMENTAL_PAGE_SIZE",
    "Failed",
    "IncompleteRead",
    "Outage",
    "is_fatal",
    "read_new_events",
]

logger = logging.getLogger("sigma_async")

_Fetch = Callable[[int, int], Awaitable[Page[Event]]]
_Before = Callable[[Event], bool]

#: Events per page on the first read of a session (its whole history, usually), and of any long backlog.
FIRST_PAGE_SIZE: Final = 100
#: Events per page on later reads: usually nothing or one event is new, so a small page decodes faster.
INCREMENTAL_PAGE_SIZE: Final = 10
#: Pages one poll may read (a million events) before it takes the listing for a server that never ends.
MAX_PAGES_PER_POLL: Final = 10_000
#: Longest wait between polls while the server keeps failing.
MAX_BACKOFF: Final = 60.0


class IncompleteRead(SigmaError):
    """A poll could not read back to the events it had seen: retried later like any transient failure."""


async def read_new_events(client: WatchClient, tracker: SessionTracker) -> list[Event]:
    """Every event of the session written at or after ``tracker.mark``, newest first, page by page.

    The listing is sorted by ``updatedAt``, newest first: the first event written before the mark ends the read.
    A long backlog is read on in pages of ``FIRST_PAGE_SIZE`` once the small pages reach a boundary of those.
    """
    session_id = tracker.session_id
    per_page = FIRST_PAGE_SIZE if tracker.mark is None else INCREMENTAL_PAGE_SIZE
    return await read_back(
        lambda page, size: client.events.list(session_id, page=page, per_page=size),
        tracker.is_read_before,
        per_page,
        f"session {session_id}",
    )


async def read_back(
    fetch: _Fetch,
    is_read_before: _Before,
    per_page: int,
    what: str,
) -> list[Event]:
    """Pages of a newest-first listing until an event read before, a short page or the server's ``total``."""
    found: dict[str, Event] = {}
    stale = 0
    page_number = 1
    while page_number <= MAX_PAGES_PER_POLL:
        page = await fetch(page_number, per_page)
        fresh = 0
        for event in page.data:
            if is_read_before(event):
                return list(found.values())
            if event.id not in found:
                found[event.id] = event
                fresh += 1
        served = _served(page, per_page)
        if len(page.data) < served or (page.total is not None and page_number * served >= page.total):
            return list(found.values())
        # A page of nothing new is a page shifted down by events written since page 1 (go on), or a server
        # repeating itself (give up after a few). Stopping at the first would skip the unread events below it.
        stale = stale + 1 if fresh == 0 else 0
        if stale >= STALE_PAGE_LIMIT:
            raise IncompleteRead(f"{what}: the events listing repeats the same page")
        page_number += 1
        if per_page < FIRST_PAGE_SIZE and ((page_number - 1) * per_page) % FIRST_PAGE_SIZE == 0:
            # A backlog: go on in big pages from where the small ones ended, rather than in a thousand small ones.
            page_number = (page_number - 1) * per_page // FIRST_PAGE_SIZE + 1
            per_page = FIRST_PAGE_SIZE
    raise IncompleteRead(f"{what}: more than {MAX_PAGES_PER_POLL} pages of new events in one poll")


def _served(page: Page[Event], asked: int) -> int:
    # A server may cap perPage below what was asked; its own perPage says where its pages end.
    if page.per_page is not None and 0 < page.per_page < asked:
        return page.per_page
    return asked


def is_fatal(exc: SigmaError) -> bool:
    """Failures a watch cannot outwait: bad credentials, no permission, no such session, server data it cannot
    follow (a ``WatchError``)."""
    return isinstance(exc, (AuthenticationError, PermissionDeniedError, NotFoundError, WatchError)) or (
        isinstance(exc, APIStatusError) and 400 <= exc.status_code < 500 and exc.status_code not in (408, 429)
    )


class Failed(enum.Enum):
    """What ``Outage.attempt`` returns for a poll that failed and should be made again."""

    FAILED = "failed"


FAILED: Final = Failed.FAILED
T = TypeVar("T")


class Outage:
    """Failures in a row and the time since the last good answer: when to poll again, or when to give up."""

    def __init__(self, what: str, interval: float, max_silence: float | None) -> None:
        self.what = what
        self.interval = interval
        self.max_silence = max_silence
        self.failures = 0
        self.last_ok = time.monotonic()
        self.last_error: SigmaError | None = None

    def end(self) -> None:
        self.failures = 0
        self.last_ok = time.monotonic()
        self.last_error = None

    def time_left(self) -> float | None:
        """Seconds the next poll may take before the silence is too long (None: no limit)."""
        if self.max_silence is None:
            return None
        return max(0.0, self.max_silence - (time.monotonic() - self.last_ok))

    def silence(self, in_flight: SigmaError | None = None) -> WatchError:
        """The error that ends the watch; ``in_flight`` is the last failure of a poll cut short by the deadline."""
        silent = time.monotonic() - self.last_ok
        last = in_flight or self.last_error
        why = f" (last: {describe(last)})" if last else " (no answer within the time)"
        error = WatchError(f"{self.what}: no good answer from the server for {silent:.1f}s{why}")
        error.__cause__ = last
        return error

    async def attempt(self, poll: Callable[[], Awaitable[T]]) -> T | Failed:
        """One poll under this policy: its result; or ``FAILED`` once the back-off after a transient failure has
        passed (poll again). Raises a fatal error at once, and ``WatchError`` once ``max_silence`` has passed,
        even in the middle of a poll the client is still retrying (the error names what it last met)."""
        box = FailureBox()
        left = self.time_left()
        # No deadline is the usual case, and this is every poll's path: a cancel scope costs more than the rest.
        deadline = anyio.move_on_after(left) if left is not None else None
        with deadline if deadline is not None else contextlib.nullcontext():
            token = watching_failures.set(box)
            try:
                result = await poll()
            except SigmaError as exc:
                await anyio.sleep(self.delay_after(exc))
                return FAILED
            finally:
                watching_failures.reset(token)
        if deadline is not None and deadline.cancelled_caught:
            raise self.silence(box.last)
        self.end()
        return result

    def delay_after(self, exc: SigmaError) -> float:
        """Seconds to wait before the next poll; raises ``exc`` if fatal, ``WatchError`` past ``max_silence``."""
        if is_fatal(exc):
            raise exc
        self.failures += 1
        self.last_error = exc
        left = self.time_left()
        if left is not None and left <= 0:
            raise self.silence()
        # Exponential from the interval, half-jittered, capped: a struggling server is not hammered in step.
        delay = min(MAX_BACKOFF, self.interval * 2.0 ** min(self.failures, 10)) * random.uniform(0.5, 1.0)
        if left is not None:
            delay = min(delay, left + 0.001)  # wake in time to give up on schedule
        logger.info("watch %s: %s; polling again in %.2fs", self.what, describe(exc), delay)
        return delay


def describe(exc: BaseException) -> str:
    if isinstance(exc, APIStatusError):
        return f"HTTP {exc.status_code}"
    if isinstance(exc, (APIConnectionError, ResponseDecodeError)):
        return type(exc).__name__
    return str(exc)

