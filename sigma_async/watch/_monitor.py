"""``Monitor``: many session and channel watches fanned into one async iterator, on one client."""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

from .._protocol import check_id
from ..transitions import Transition
from ._api import WatchClient
from ._cursor import decode_cursor
from ._engine import Engine
from ._plan import check_poll_mode
from ._scheduler import ErrorCallback
from ._session import check_interval

__all__ = ["Monitor"]

# What a monitor passes on to how each session is watched (see ``watch_session``).
_WATCH_OPTIONS = frozenset({"max_silence", "table", "jitter", "status_every", "playback", "playback_stall_after"})


class Monitor:
    """Watches many sessions and channels at once and yields every transition of all of them.

    >>> async with client.monitor(session_ids=ids, channel_ids=[ch.id]) as monitor:
    ...     async for t in monitor:
    ...         print(t.session_id, t.kind)
    ...         if t.kind == "interrupted":
    ...             monitor.add_session(other_id)

    All watches share the client's connection pool, its request budget and its ``Retry-After`` pause, and one
    loop polls them all: a watched session is a few small objects, not a task. Sessions and channels can be
    added and removed while it runs. A session is watched for as long as anything claims it, directly
    (``add_session``) or through a watched channel that reports it, and is reported once. ``cursors`` maps
    session ids to cursors to resume from, for sessions added without ``since=`` and for those a channel watch
    reaches; a channel whose sessions have cursors finishes every one of them after a restart. With
    ``poll="feed"`` each session still reads its own events every ``resync`` seconds, the safety net: 300 by
    default, stretched to ``sessions / 100`` when that is longer, so that resyncs stay under 100 reads a second
    (1,000 s at 100,000 sessions); a ``resync`` given is kept as it is. The iteration
    ends when nothing is left to watch (every session ended, no channel watched) unless ``stay_open=True``. A
    watch that fails for good (401/403/404, ``max_silence``) ends the monitor with that error, unless
    ``on_error(id, error)`` is given: then only that watch stops. Leaving ``async with`` (or ``aclose()``) stops
    every read and leaves no task behind. Polling goes on while the consumer handles a transition, until
    ``max_buffer`` transitions wait to be taken: then it pauses, and catches up (nothing is lost) when they are.
    """

    def __init__(
        self,
        client: WatchClient,
        *,
        session_ids: Iterable[str] = (),
        channel_ids: Iterable[str] = (),
        interval: float = 2.0,
        stay_open: bool = False,
        on_error: ErrorCallback | None = None,
        max_buffer: int = 1024,
        stagger: bool = True,
        poll: str = "lean",
        cursors: Mapping[str, str] | None = None,
        resync: float | None = None,
        **watch_kw: Any,
    ) -> None:
        unknown = set(watch_kw) - _WATCH_OPTIONS
        if unknown:
            raise TypeError(f"Monitor() got unexpected keyword arguments: {', '.join(sorted(unknown))}")
        check_interval(interval, watch_kw.get("jitter", 0.1))
        check_poll_mode(poll, feed_allowed=True)
        if resync is not None and not resync > 0:
            raise ValueError(f"resync must be > 0 seconds, got {resync!r}")
        if max_buffer < 1:
            raise ValueError(f"max_buffer must be >= 1, got {max_buffer!r}")
        # ``cursors`` is not copied: a caller (the relay) may learn cursors later, e.g. of a channel it takes over.
        self._engine = Engine(
            client, interval=interval, stay_open=stay_open, on_error=on_error, max_buffer=max_buffer,
            stagger=stagger, poll=poll, cursors=cursors, resync=resync, **watch_kw,
        )  # fmt: skip
        # A monitor dropped without aclose() (a plain ``async for`` left with ``break``) cancels its reads.
        weakref.finalize(self, self._engine.abandon)
        for sid in session_ids:
            self.add_session(sid)
        for cid in channel_ids:
            self.add_channel(cid)

    @property
    def watching(self) -> frozenset[tuple[str, str]]:
        """What is claimed now, as ``("session", id)`` (added directly) and ``("channel", id)`` pairs."""
        return self._engine.watching

    def add_session(self, session_id: str, *, since: str | None = None, channel_id: str | None = None) -> None:
        """Watch one more session (no-op if it is already added). A bad ``since`` raises ``ValueError`` here.

        ``channel_id`` names its channel, for its transitions' ``channel_id`` (the API cannot tell it).
        """
        sid = check_id(session_id, "session id")
        if channel_id is not None:
            check_id(channel_id, "channel id")
        cursor = since if since is not None else self._engine.cursors.get(sid)
        if cursor is not None:
            decode_cursor(cursor, sid)  # now, not later inside the running monitor where it would end every watch
        self._engine.add_session(sid, since=since, channel_id=channel_id)

    def add_channel(self, channel_id: str) -> None:
        """Watch one more channel, following it across its sessions."""
        self._engine.add_channel(check_id(channel_id, "channel id"))

    def remove_session(self, session_id: str) -> None:
        """Stop watching a session added directly (it goes on if a watched channel still reports it)."""
        self._engine.remove_session(session_id)

    def remove_channel(self, channel_id: str) -> None:
        """Stop following a channel, and its sessions that nothing else claims."""
        self._engine.remove_channel(channel_id)

    async def __aenter__(self) -> Monitor:
        self._engine.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> Monitor:
        return self

    async def __anext__(self) -> Transition:
        return await self._engine.next()

    async def aclose(self) -> None:
        """Stop every watch and wait until its reads are gone. Safe to call twice."""
        await self._engine.aclose()
