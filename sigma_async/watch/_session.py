"""Watching one session: ``watch_session`` and ``wait_for``, on the same loop as every monitor."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from typing import Any

import anyio

from .._protocol import check_id
from ..errors import WatchError
from ..transitions import Transition
from ._api import WatchClient
from ._cursor import decode_cursor
from ._engine import Engine
from ._kinds import DEFAULT_TABLE, KINDS, KindTable
from ._plan import DEFAULT_STATUS_EVERY, check_poll_mode
from ._scheduler import stream

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
    playback: bool = False,
    playback_stall_after: float | None = None,
) -> AsyncGenerator[Transition, None]:
    """Yield the transitions of one session, each once and in order, ending with ``Ended``.

    Polls every ``interval`` seconds (± ``jitter`` of it, so that many watches do not poll in step).
    ``poll="lean"`` (the default) reads the new events every poll and the status on the first poll, until the
    session is on air, after an event that announces a change, and every ``status_every`` polls;
    ``poll="full"`` reads both every poll. Connection failures, timeouts, 429 and 5xx do not end the stream: it
    backs off and goes on, for ever unless ``max_silence`` seconds pass without one good poll (then
    ``WatchError``). 401, 403 and 404 raise at once. Pass a transition's ``cursor`` as ``since=`` to resume
    right after it. ``channel_id`` names the session's channel for its transitions (the API cannot tell it).
    ``playback=True`` (with ``channel_id``) also judges the channel's HLS output from ``Live`` to ``Ended``:
    ``PlaybackStalled`` and ``PlaybackResumed`` (see ``client.playback``).

    >>> async for t in watch_session(client, sid):
    ...     print(t.kind, t.at)
    """
    # Checked here, at the call, rather than at the first ``anext``: bad input fails where it was written.
    check_interval(interval, jitter)
    check_poll_mode(poll, feed_allowed=False)
    check_id(session_id, "session id")
    if channel_id is not None:
        check_id(channel_id, "channel id")
    elif playback:
        raise ValueError("playback=True needs the session's channel: give channel_id= (the API cannot tell it)")
    if since is not None:
        decode_cursor(since, session_id)
    engine = Engine(
        client, interval=interval, jitter=jitter, poll="full" if poll == "full" else "lean",
        status_every=status_every, table=table, max_silence=max_silence, stagger=False, first_delay=first_delay,
        playback=playback, playback_stall_after=playback_stall_after,
    )  # fmt: skip
    engine.add_session(session_id, since=since, channel_id=channel_id)
    return stream(engine)


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
