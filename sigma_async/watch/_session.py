"""Watching one session: ``watch_session`` and ``wait_for``, one loop doing the reads its plan asks for."""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncGenerator
from datetime import datetime, timezone
from typing import Any

import anyio

from .._protocol import check_id
from ..errors import WatchError
from ..models import Event
from ..transitions import Transition
from ._api import WatchClient
from ._kinds import DEFAULT_TABLE, KINDS, KindTable
from ._plan import DEFAULT_STATUS_EVERY, SessionPlan, check_poll_mode
from ._reads import FAILED, Outage, read_new_events
from ._tracker import SessionTracker

__all__ = ["check_interval", "wait_for", "watch_session"]


def watch_session(
    client: WatchClient,
    session_id: str,
    *,
    interval: float = 2.0,
    since: str | None = None,
    max_silence: float | None = None,
    channel_id: str | None = None,
    table: KindTable = DEFAULT_TABLE,
    jitter: float = 0.1,
    first_delay: float = 0.0,
    poll: str = "lean",
    status_every: int = DEFAULT_STATUS_EVERY,
) -> AsyncGenerator[Transition, None]:
    """Yield the transitions of one session, each once and in order, ending with ``Ended``.

    Polls every ``interval`` seconds (± ``jitter`` of it, so that many watches do not poll in step).
    ``poll="lean"`` (the default) reads the new events every poll and the status when an event announces a
    change, or every ``status_every`` polls; ``poll="full"`` reads both every poll. Connection failures,
    timeouts, 429 and 5xx do not end the stream: it backs off and goes on, for ever unless ``max_silence``
    seconds pass without one good poll (then ``WatchError``). 401, 403 and 404 raise at once. Pass a
    transition's ``cursor`` as ``since=`` to resume right after it.

    >>> async for t in watch_session(client, sid):
    ...     print(t.kind, t.at)
    """
    # Checked here, at the call, rather than at the first ``anext``: bad input fails where it was written.
    check_interval(interval, jitter)
    check_poll_mode(poll, feed_allowed=False)
    check_id(session_id, "session id")
    tracker = SessionTracker(session_id, channel_id=channel_id, since=since, table=table)
    plan = SessionPlan("full" if poll == "full" else "lean", status_every=status_every)
    return _watch_session(client, tracker, plan, interval, max_silence, jitter, first_delay)


async def _watch_session(
    client: WatchClient,
    tracker: SessionTracker,
    plan: SessionPlan,
    interval: float,
    max_silence: float | None,
    jitter: float,
    first_delay: float,
) -> AsyncGenerator[Transition, None]:
    outage = Outage(f"session {tracker.session_id}", interval, max_silence)
    if tracker.ended:
        return
    if first_delay > 0:
        await anyio.sleep(first_delay)
    while True:
        reads = await outage.attempt(lambda: poll_session(client, tracker, plan))
        if reads is FAILED:
            continue
        status, events, read_status = reads
        plan.polled(read_status)
        for transition in tracker.feed(status, events, datetime.now(timezone.utc)):
            yield transition
        if tracker.ended:
            return
        # After a terminal status the final read waits one interval too: an ``ended`` event written a moment
        # after the status flipped is then carried by ``Ended``.
        await anyio.sleep(interval * random.uniform(1.0 - jitter, 1.0 + jitter))


async def poll_session(
    client: WatchClient, tracker: SessionTracker, plan: SessionPlan
) -> tuple[str | None, list[Event], bool]:
    """One poll's reads, all or nothing: (status or None, the events read, whether the status was read).

    A failure part-way raises and feeds nothing, so faults cannot change what is yielded.
    """
    reads = plan.first_reads(tracker.awaiting_final_events)
    status = (await client.sessions.status(tracker.session_id)).status if reads.status else None
    events = await read_new_events(client, tracker)
    if status is None and not tracker.awaiting_final_events:
        fresh = [e for e in events if not tracker.is_seen(e)]
        if plan.then_status(fresh, tracker.table):
            status = (await client.sessions.status(tracker.session_id)).status
    return status, events, status is not None


async def wait_for(
    client: WatchClient, session_id: str, kind: str, *, timeout: float | None = None, **watch_kw: Any
) -> Transition:
    """The first transition of ``kind`` (``"live"``, ``"stable"``, ...) of a session.

    Raises ``WatchError`` if the session ends first, and ``TimeoutError`` after ``timeout`` seconds.

    >>> t = await wait_for(client, sid, "live", timeout=120)
    """
    if kind not in KINDS:
        raise ValueError(f"unknown transition kind {kind!r}; kinds are {sorted(KINDS)}")
    transitions = watch_session(client, session_id, **watch_kw)  # arguments checked now, not at the first poll
    with anyio.fail_after(timeout):
        async with contextlib.aclosing(transitions):
            async for transition in transitions:
                if transition.kind == kind:
                    return transition
    raise WatchError(f"session {session_id} ended before any {kind!r} transition")


def check_interval(interval: float, jitter: float) -> None:
    if not interval > 0:
        raise ValueError(f"interval must be > 0 seconds, got {interval!r}")
    if not 0 <= jitter < 1:
        raise ValueError(f"jitter must be in [0, 1), got {jitter!r}")
