"""Polling loops over the client: ``watch_session``, ``watch_channel``, ``wait_for`` and ``Monitor`` (fan-in)."""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import AsyncGenerator
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Final

import anyio

from ._client import STALE_PAGE_LIMIT
from ._protocol import check_id
from ._tracker import DEFAULT_TABLE, KindTable, SessionTracker
from .errors import (
    APIConnectionError,
    APIStatusError,
    AuthenticationError,
    NotFoundError,
    PermissionDeniedError,
    ResponseDecodeError,
    SigmaError,
    WatchError,
)
from .models import Event
from .transitions import Transition

if TYPE_CHECKING:
    from ._client import SigmaClient

__all__ = ["Monitor", "watch_channel", "watch_session", "wait_for"]

logger = logging.getLogger("sigma_async")

#: Events per page on the first read of a session (its whole history, usually).
FIRST_PAGE_SIZE: Final = 100
#: Events per page on later reads: usually nothing or one event is new, so a small page decodes faster.
INCREMENTAL_PAGE_SIZE: Final = 10
#: Longest wait between polls while the server keeps failing.
MAX_BACKOFF: Final = 60.0
#: Pages one poll may read (100,000 events at the first page size) before it gives up and retries later.
MAX_PAGES_PER_POLL: Final = 1000



def is_fatal(exc: SigmaError) -> bool:
    """Failures a watch cannot outwait: bad credentials, no permission, no such session."""
    return isinstance(exc, (AuthenticationError, PermissionDeniedError, NotFoundError)) or (
        isinstance(exc, APIStatusError) and 400 <= exc.status_code < 500 and exc.status_code not in (408, 429)
    )


def watch_session(
    client: SigmaClient,
    session_id: str,
    *,
    interval: float = 2.0,
    since: str | None = None,
    max_silence: float | None = None,
    channel_id: str | None = None,
    table: KindTable = DEFAULT_TABLE,
    jitter: float = 0.1,
    first_delay: float = 0.0,
) -> AsyncGenerator[Transition, None]:
    """Yield the transitions of one session, each once and in order, ending with ``Ended``.

    Polls the status and the new events every ``interval`` seconds (± ``jitter`` of it, so that many watches
    do not poll in step). Connection failures, timeouts, 429 and 5xx do not end the stream: it backs off and
    goes on, for ever unless ``max_silence`` seconds pass without one good poll (then ``WatchError``).
    401, 403 and 404 raise at once. Pass a transition's ``cursor`` as ``since=`` to resume right after it.

    >>> async for t in watch_session(client, sid):
    ...     print(t.kind, t.at)
    """
    # Checked here, at the call, rather than at the first ``anext``: bad input fails where it was written.
    _check_interval(interval, jitter)
    check_id(session_id, "session id")
    tracker = SessionTracker(session_id, channel_id=channel_id, since=since, table=table)
    return _watch_session(client, tracker, interval, max_silence, jitter, first_delay)


async def _watch_session(
    client: SigmaClient,
    tracker: SessionTracker,
    interval: float,
    max_silence: float | None,
    jitter: float,
    first_delay: float,
) -> AsyncGenerator[Transition, None]:
    session_id = tracker.session_id
    outage = _Outage(f"session {session_id}", interval, max_silence)
    if first_delay > 0:
        await anyio.sleep(first_delay)
    while True:
        final = tracker.awaiting_final_events
        # A poll is all or nothing: a failure part-way feeds nothing, so faults cannot change what is yielded.
        with anyio.move_on_after(outage.time_left()) as poll:
            try:
                status = None if final else (await client.sessions.status(session_id)).status
                events = await _new_events(client, tracker, session_id)
            except SigmaError as exc:
                await anyio.sleep(outage.delay_after(exc))
                continue
        if poll.cancelled_caught:
            raise outage.silence()  # one hung poll outlasted max_silence
        outage.end()
        for transition in tracker.feed(status, events, datetime.now(timezone.utc)):
            yield transition
        if tracker.ended:
            return
        if not tracker.awaiting_final_events:
            await anyio.sleep(interval * random.uniform(1.0 - jitter, 1.0 + jitter))


class _IncompleteRead(SigmaError):
    """A poll could not read back to the events it had seen: retried later like any transient failure."""


async def _new_events(client: SigmaClient, tracker: SessionTracker, session_id: str) -> list[Event]:
    """The events not read before, newest first, page by page: a burst of any size is read whole.

    The listing is sorted by ``updatedAt`` (the API page's order), and ``createdAt <= updatedAt``: so the first
    event updated before the newest one already yielded ends the read, and every event after it is older too.
    """
    watermark = tracker.watermark
    per_page = FIRST_PAGE_SIZE if watermark is None else INCREMENTAL_PAGE_SIZE
    found: dict[str, Event] = {}
    stale_pages = 0
    for page_number in range(1, MAX_PAGES_PER_POLL + 1):
        page = await client.events.list(session_id, page=page_number, per_page=per_page)
        fresh = 0
        for event in page.data:
            if watermark is not None and (event.updated_at or event.created_at) < watermark:
                return list(found.values())
            if event.id not in found:
                found[event.id] = event
                fresh += 1
        if len(page.data) < per_page:
            return list(found.values())
        # A page of nothing new is a page shifted down by events written since page 1 (go on), or a server
        # repeating itself (give up after a few). Stopping at the first would skip the unread events below it.
        stale_pages = stale_pages + 1 if fresh == 0 else 0
        if stale_pages >= STALE_PAGE_LIMIT:
            raise _IncompleteRead(f"session {session_id}: the events listing repeats the same page")
    raise _IncompleteRead(f"session {session_id}: more than {MAX_PAGES_PER_POLL} pages of new events in one poll")


def watch_channel(
    client: SigmaClient,
    channel_id: str,
    *,
    interval: float = 2.0,
    max_silence: float | None = None,
    table: KindTable = DEFAULT_TABLE,
    jitter: float = 0.1,
    first_delay: float = 0.0,
) -> AsyncGenerator[Transition, None]:
    """Yield the transitions of each session of a channel in turn, following ``current_session_id``.

    Runs until cancelled or broken out of: when a session ends, it waits for the channel's next one. A deleted
    channel raises ``NotFoundError``. A session that starts and ends entirely between two polls of the channel
    is not seen.
    """
    _check_interval(interval, jitter)
    check_id(channel_id, "channel id")
    return _watch_channel(client, channel_id, interval, max_silence, table, jitter, first_delay)


async def _watch_channel(
    client: SigmaClient,
    channel_id: str,
    interval: float,
    max_silence: float | None,
    table: KindTable,
    jitter: float,
    first_delay: float,
) -> AsyncGenerator[Transition, None]:
    done: str | None = None
    outage = _Outage(f"channel {channel_id}", interval, max_silence)
    if first_delay > 0:
        await anyio.sleep(first_delay)
    while True:
        with anyio.move_on_after(outage.time_left()) as poll:
            try:
                session_id = (await client.channels.get(channel_id)).current_session_id
            except SigmaError as exc:
                await anyio.sleep(outage.delay_after(exc))
                continue
        if poll.cancelled_caught:
            raise outage.silence()
        outage.end()
        if session_id and session_id != done:
            session = watch_session(
                client, session_id, interval=interval, max_silence=max_silence, channel_id=channel_id,
                table=table, jitter=jitter,
            )
            # aclosing: leaving this generator early must close the inner one here, not in a finaliser task.
            async with contextlib.aclosing(session) as transitions:
                async for transition in transitions:
                    yield transition
            done = session_id
            continue
        await anyio.sleep(interval * random.uniform(1.0 - jitter, 1.0 + jitter))


async def wait_for(
    client: SigmaClient, session_id: str, kind: str, *, timeout: float | None = None, **watch_kw: Any
) -> Transition:
    """The first transition of ``kind`` (``"live"``, ``"stable"``, ...) of a session.

    Raises ``WatchError`` if the session ends first, and ``TimeoutError`` after ``timeout`` seconds.
    """
    from ._tracker import KINDS

    if kind not in KINDS:
        raise ValueError(f"unknown transition kind {kind!r}; kinds are {sorted(KINDS)}")
    with anyio.fail_after(timeout):
        async with contextlib.aclosing(watch_session(client, session_id, **watch_kw)) as transitions:
            async for transition in transitions:
                if transition.kind == kind:
                    return transition
    raise WatchError(f"session {session_id} ended before any {kind!r} transition")


class _Outage:
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

    def silence(self) -> WatchError:
        silent = time.monotonic() - self.last_ok
        why = f" ({self.last_error})" if self.last_error else " (no answer)"
        error = WatchError(f"{self.what}: no good answer from the server for {silent:.1f}s{why}")
        error.__cause__ = self.last_error
        return error

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
        logger.info("watch %s: %s; polling again in %.2fs", self.what, _describe(exc), delay)
        return delay


def _check_interval(interval: float, jitter: float) -> None:
    if not interval > 0:
        raise ValueError(f"interval must be > 0 seconds, got {interval!r}")
    if not 0 <= jitter < 1:
        raise ValueError(f"jitter must be in [0, 1), got {jitter!r}")


def _describe(exc: SigmaError) -> str:
    if isinstance(exc, APIStatusError):
        return f"HTTP {exc.status_code}"
    if isinstance(exc, (APIConnectionError, ResponseDecodeError)):
        return type(exc).__name__
    return str(exc)


from ._monitor import Monitor  # noqa: E402  - Monitor builds on the loops above
