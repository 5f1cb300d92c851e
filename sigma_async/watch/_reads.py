"""The reads a poll makes, and how a watch treats their failures: paging back, backing off, giving up."""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from typing import Final

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
from ..models import Event, Page, Session
from ._api import WatchClient
from ._listing import ListingRead
from ._tracker import SessionTracker

__all__ = [
    "FIRST_PAGE_SIZE",
    "INCREMENTAL_PAGE_SIZE",
    "MAX_BACKOFF",
    "IncompleteRead",
    "backoff_delay",
    "describe",
    "is_fatal",
    "read_back",
    "read_listing",
    "read_new_events",
]

logger = logging.getLogger("sigma_async")

_Fetch = Callable[[int, int], Awaitable[Page[Event]]]

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
    """The session's events newest first, page by page, down to the first page that ends in one read before."""
    session_id = tracker.session_id
    per_page = FIRST_PAGE_SIZE if tracker.mark is None else INCREMENTAL_PAGE_SIZE
    # The first page is read here, not through read_back: it is nearly always the only one, and this is the
    # read every lean poll makes, so it goes without the paging machinery (its frames and its closure).
    first = await client.events.list(session_id, page=1, per_page=per_page)
    data = first.data
    if len(data) < _served(first, per_page) or tracker.ends_read(data[-1]):
        return data
    return await read_back(
        lambda page, size: client.events.list(session_id, page=page, per_page=size),
        tracker.ends_read,
        per_page,
        f"session {session_id}",
        first=first,
    )


async def read_back(
    fetch: _Fetch, ends_read: Callable[[Event], bool], per_page: int, what: str, *, first: Page[Event] | None = None
) -> list[Event]:
    """Pages of a newest-first listing until one that ends in an event read before, a short page or ``total``.

    A page is read whole, never cut at the first event read before: an event listed late or out of order sits
    among events already read, and is found on that page. A page that ends in an event still unread may have
    more below it, so the read goes on. Events seen on an earlier page of the same read (pages shift down while
    events are written) are expected, even a whole page of them; only the same page several times in a row
    means a server that repeats itself.
    """
    found: dict[str, Event] = {}
    stale = 0
    page_number = 1
    previous: list[str] = []
    while page_number <= MAX_PAGES_PER_POLL:
        if first is not None:
            page, first = first, None  # page 1, read by the caller
        else:
            page = await fetch(page_number, per_page)
        fresh = 0
        for event in page.data:
            if event.id not in found:
                found[event.id] = event
                fresh += 1
        # A short page is the only sure last one (a total may lie); a server that caps perPage says so in the
        # page's own perPage, and its pages end there.
        if len(page.data) < _served(page, per_page):
            return list(found.values())
        if ends_read(page.data[-1]):
            return list(found.values())
        # A page of events all seen on earlier pages of this read is one shifted down by events written since:
        # go on. Only the same page again and again is a server repeating itself.
        ids = [e.id for e in page.data]
        stale = stale + 1 if fresh == 0 and ids == previous else 0
        previous = ids
        if stale >= STALE_PAGE_LIMIT:
            raise IncompleteRead(f"{what}: the events listing repeats the same page")
        page_number += 1
        if per_page < FIRST_PAGE_SIZE and ((page_number - 1) * per_page) % FIRST_PAGE_SIZE == 0:
            # A backlog: go on in big pages from where the small ones ended, rather than in a thousand small ones.
            page_number = (page_number - 1) * per_page // FIRST_PAGE_SIZE + 1
            per_page = FIRST_PAGE_SIZE
    raise IncompleteRead(f"{what}: more than {MAX_PAGES_PER_POLL} pages of new events in one poll")


async def read_listing(client: WatchClient, read: ListingRead) -> ListingRead:
    """Page a channel's sessions listing until ``read`` has what it needs."""
    channel_id = read.view.channel_id
    while not read.done:
        page_number, per_page = read.next_page()
        page: Page[Session] = await client.sessions.list(channel_id, page=page_number, per_page=per_page)
        read.take(page)
    return read


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


def backoff_delay(interval: float, failures: int) -> float:
    """Seconds before the next poll after ``failures`` transient failures in a row: exponential from the
    interval, half-jittered, capped, so that a struggling server is not hammered in step."""
    return min(MAX_BACKOFF, interval * 2.0 ** min(failures, 10)) * random.uniform(0.5, 1.0)


def describe(exc: BaseException) -> str:
    if isinstance(exc, APIStatusError):
        return f"HTTP {exc.status_code}"
    if isinstance(exc, (APIConnectionError, ResponseDecodeError)):
        return type(exc).__name__
    return str(exc)
