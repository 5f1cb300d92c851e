"""Polling loops over the client: ``watch_session``, ``watch_channel``, ``wait_for`` and ``Monitor`` (fan-in)."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import AsyncGenerator
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Final

import anyio

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
    failures = 0
    last_ok = time.monotonic()
    if first_delay > 0:
        await anyio.sleep(first_delay)
    while True:
        final = tracker.awaiting_final_events
        try:
            status = None if final else (await client.sessions.status(session_id)).status
            events = await _new_events(client, tracker, session_id)
        except SigmaError as exc:
            if is_fatal(exc):
                raise
            failures += 1
            silent = time.monotonic() - last_ok
            if max_silence is not None and silent >= max_silence:
                raise WatchError(
                    f"session {session_id}: no good answer from the server for {silent:.1f}s ({exc})"
                ) from exc
            delay = min(MAX_BACKOFF, interval * 2 ** min(failures, 10)) * random.uniform(0.5, 1.0)
            if max_silence is not None:
                delay = min(delay, max(0.0, max_silence - silent) + 0.001)
            logger.info("watch %s: %s; polling again in %.2fs", session_id, _describe(exc), delay)
            await anyio.sleep(delay)
            continue
        failures = 0
        last_ok = time.monotonic()
        for transition in tracker.feed(status, events, datetime.now(timezone.utc)):
            yield transition
        if tracker.ended:
            return
        if not tracker.awaiting_final_events:
            await anyio.sleep(interval * random.uniform(1.0 - jitter, 1.0 + jitter))


async def _new_events(client: SigmaClient, tracker: SessionTracker, session_id: str) -> list[Event]:
    """Events newest-first, page by page, until one that was read before: a burst of any size is read whole."""
    per_page = FIRST_PAGE_SIZE if tracker.watermark is None else INCREMENTAL_PAGE_SIZE
    found: list[Event] = []
    seen_ids: set[str] = set()
    page_number = 1
    while True:
        page = await client.events.list(session_id, page=page_number, per_page=per_page)
        fresh = 0
        for event in page.data:
            if tracker.is_older(event):
                return found
            if event.id not in seen_ids:
                seen_ids.add(event.id)
                found.append(event)
                fresh += 1
        # A short page is the last; a page with nothing new means the server repeats itself.
        if len(page.data) < per_page or fresh == 0:
            return found
        page_number += 1


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
    if first_delay > 0:
        await anyio.sleep(first_delay)
    failures = 0
    last_ok = time.monotonic()
    while True:
        try:
            session_id = (await client.channels.get(channel_id)).current_session_id
        except SigmaError as exc:
            if is_fatal(exc):
                raise
            failures += 1
            silent = time.monotonic() - last_ok
            if max_silence is not None and silent >= max_silence:
                raise WatchError(f"channel {channel_id}: no good answer for {silent:.1f}s ({exc})") from exc
            await anyio.sleep(min(MAX_BACKOFF, interval * 2 ** min(failures, 10)) * random.uniform(0.5, 1.0))
            continue
        failures = 0
        last_ok = time.monotonic()
        if session_id and session_id != done:
            async for transition in watch_session(
                client, session_id, interval=interval, max_silence=max_silence, channel_id=channel_id,
                table=table, jitter=jitter,
            ):
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
        async for transition in watch_session(client, session_id, **watch_kw):
            if transition.kind == kind:
                return transition
    raise WatchError(f"session {session_id} ended before any {kind!r} transition")


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
