"""``Monitor``: many session and channel watches fanned into one async iterator, on one client."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any

import anyio
from anyio.abc import TaskGroup

from .._protocol import check_id
from ..errors import SigmaError, sole_exception
from ..transitions import Transition
from ._api import WatchClient
from ._channel import watch_channel
from ._feed import DEFAULT_RESYNC, Feed, FeedRefused, watch_fed_session
from ._kinds import DEFAULT_TABLE
from ._plan import check_poll_mode
from ._session import watch_session
from ._tracker import SessionTracker, decode_cursor

__all__ = ["Monitor"]

logger = logging.getLogger("sigma_async")

ErrorCallback = Callable[[str, SigmaError], object]


class Monitor:
    """Watches many sessions and channels at once and yields every transition of all of them.

    >>> async with client.monitor(session_ids=ids, channel_ids=[ch.id]) as monitor:
    ...     async for t in monitor:
    ...         print(t.session_id, t.kind)
    ...         if t.kind == "interrupted":
    ...             monitor.add_session(other_id)

    All watches share the client's connection pool, its request budget and its ``Retry-After`` pause. Sessions
    and channels can be added and removed while it runs. A session watched directly and also reached through
    a watched channel is reported once, by its direct watch. ``cursors`` maps session ids to cursors to resume
    from, for sessions added without ``since=`` and for those a channel watch reaches. The iteration ends when
    nothing is left to watch (every session ended, no channel watched) unless ``stay_open=True``. A watch that
    fails for good (401/403/404, ``max_silence``) ends the monitor with that error, unless ``on_error(id,
    error)`` is given: then only that watch stops. Leaving ``async with`` (or ``aclose()``) stops every watch and
    leaves no task behind; so does dropping a monitor that a plain ``async for`` broke out of.
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
        resync: float = DEFAULT_RESYNC,
        **watch_kw: Any,
    ) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be > 0 seconds, got {interval!r}")
        check_poll_mode(poll, feed_allowed=True)
        if not resync > 0:
            raise ValueError(f"resync must be > 0 seconds, got {resync!r}")
        # The running tasks hold only the core, so the monitor itself can be dropped (and then stop them).
        # ``cursors`` is not copied: a caller (the relay) may learn cursors later, e.g. of a channel it takes over.
        self._core = _Core(
            client, interval, stay_open, on_error, max_buffer, stagger, watch_kw,
            poll=poll, cursors=cursors if cursors is not None else {}, resync=resync,
        )  # fmt: skip
        for sid in session_ids:
            self.add_session(sid)
        for cid in channel_ids:
            self.add_channel(cid)

    @property
    def watching(self) -> frozenset[tuple[str, str]]:
        """What is watched now, as ``("session", id)`` and ``("channel", id)`` pairs."""
        return frozenset(self._core.scopes) | frozenset(self._core.queued)

    def add_session(self, session_id: str, *, since: str | None = None, channel_id: str | None = None) -> None:
        """Watch one more session (no-op if it is already watched). A bad ``since`` raises ``ValueError`` here.

        ``channel_id`` is the channel the session belongs to, for its transitions' ``channel_id`` (the API gives
        no way to read a session's channel)."""
        sid = check_id(session_id, "session id")
        since = since if since is not None else self._core.cursors.get(sid)
        if since is not None:
            decode_cursor(since, sid)  # now, not later inside the running monitor where it would end every watch
        if channel_id is not None:
            self._core.channel_of[sid] = check_id(channel_id, "channel id")
        self._core.add(("session", sid), since)

    def add_channel(self, channel_id: str) -> None:
        """Watch one more channel, following it across its sessions."""
        self._core.add(("channel", check_id(channel_id, "channel id")), None)

    def remove_session(self, session_id: str) -> None:
        self._core.remove(("session", session_id))

    def remove_channel(self, channel_id: str) -> None:
        self._core.remove(("channel", channel_id))

    async def __aenter__(self) -> Monitor:
        self._core.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> Monitor:
        return self

    async def __anext__(self) -> Transition:
        core = self._core
        if core.runner is None:
            core.start()
        try:
            while True:
                scope, transition = await core.receive.receive()
                # A removed watch may have left transitions in the buffer: removal means "no more of these".
                if not scope.cancel_called:
                    return transition
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            pass
        await core.join()
        raise StopAsyncIteration

    async def aclose(self) -> None:
        """Stop every watch and wait until they are gone. Safe to call twice."""
        await self._core.close()

    def __del__(self) -> None:
        core = getattr(self, "_core", None)
        if core is not None:
            core.abandon()


class _Core:
    """The running part of a monitor: a task group of watches feeding one memory stream."""

    def __init__(
        self,
        client: WatchClient,
        interval: float,
        stay_open: bool,
        on_error: ErrorCallback | None,
        max_buffer: int,
        stagger: bool,
        watch_kw: dict[str, Any],
        *,
        poll: str,
        cursors: Mapping[str, str],
        resync: float,
    ) -> None:
        self.client = client
        self.interval = interval
        self.stay_open = stay_open
        self.on_error = on_error
        self.stagger = stagger
        self.watch_kw = watch_kw
        # Each item carries its watch's cancel scope, so that a removed watch's leftovers can be dropped.
        self.send, self.receive = anyio.create_memory_object_stream[tuple[anyio.CancelScope, Transition]](
            max_buffer
        )
        self.scopes: dict[tuple[str, str], anyio.CancelScope] = {}
        # Watches that ended by themselves may still have items in the buffer, which holds at most max_buffer
        # items: so at most that many recent ones matter, for remove() to drop their leftovers.
        self.done_scopes: dict[tuple[str, str], anyio.CancelScope] = {}
        self.max_buffer = max_buffer
        self.queued: dict[tuple[str, str], str | None] = {}
        self.tg: TaskGroup | None = None
        self.runner: asyncio.Task[None] | None = None
        self.finished = False
        self.cursors = cursors
        self.poll = poll
        self.resync = resync
        self.feed: Feed | None = None
        self.feed_scope: anyio.CancelScope | None = None
        # Sessions a channel watch is reporting now, and by which channel: a session is reported by one watch.
        self.followed: dict[str, str] = {}
        # The channel of a session added directly, when the caller knows it.
        self.channel_of: dict[str, str] = {}

    def add(self, key: tuple[str, str], since: str | None) -> None:
        if self.finished:
            raise RuntimeError("this monitor has finished; start a new one")
        if key in self.scopes or key in self.queued:
            return
        if key[0] == "session" and key[1] in self.followed:
            return  # a watched channel is reporting this session already: once is enough
        if self.tg is None:
            self.queued[key] = since
        else:
            self.spawn(self.tg, key, since)

    def remove(self, key: tuple[str, str]) -> None:
        self.queued.pop(key, None)
        scope = self.scopes.pop(key, None) or self.done_scopes.pop(key, None)
        if scope is not None:
            scope.cancel()

    def start(self) -> None:
        if self.runner is None:
            self.runner = asyncio.get_running_loop().create_task(self.run(), name="sigma-async monitor")

    async def run(self) -> None:
        try:
            async with self.send, anyio.create_task_group() as tg:
                if self.poll in ("feed", "auto"):
                    await self.open_feed(tg)
                self.tg = tg
                queued, self.queued = self.queued, {}
                for key, since in queued.items():
                    self.spawn(tg, key, since)
                if self.stay_open:
                    tg.start_soon(anyio.sleep_forever, name="sigma-async monitor (stay open)")
        finally:
            # Nothing can be added from here on: it would be queued for a task group that is gone.
            self.tg = None
            self.finished = True

    async def open_feed(self, tg: TaskGroup) -> None:
        """Probe the app-wide listing and start the feed; ``"auto"`` falls back to lean if it is refused."""
        feed = Feed(self.client, self.interval)
        try:
            await feed.probe()
        except FeedRefused as exc:
            if self.poll == "feed":
                raise
            logger.warning("monitor: %s; polling each session on its own instead (poll='lean')", exc)
            return
        self.feed = feed
        self.feed_scope = anyio.CancelScope()
        tg.start_soon(self.run_feed, name="sigma-async feed")

    async def run_feed(self) -> None:
        assert self.feed is not None and self.feed_scope is not None
        with self.feed_scope:
            await self.feed.run(max_silence=self.watch_kw.get("max_silence"))

    def spawn(self, tg: TaskGroup, key: tuple[str, str], since: str | None) -> None:
        scope = anyio.CancelScope()
        self.scopes[key] = scope
        # Spread the first polls over one interval so that thousands of watches do not poll in step.
        delay = random.uniform(0, self.interval) if self.stagger else 0.0
        tg.start_soon(self.watch, key, since, scope, delay, name=f"sigma-async watch {key[0]} {key[1]}")

    def claim(self, session_id: str, channel_id: str) -> bool:
        """Whether a channel watch may report this session: not if it is watched directly."""
        if ("session", session_id) in self.scopes or ("session", session_id) in self.queued:
            return False
        self.followed[session_id] = channel_id
        return True

    async def watch(self, key: tuple[str, str], since: str | None, scope: anyio.CancelScope, delay: float) -> None:
        kind, ident = key
        poll = "lean" if self.poll in ("auto", "feed") else self.poll
        with scope:
            try:
                if kind == "session" and self.feed is not None:
                    tracker = SessionTracker(
                        ident, channel_id=self.channel_of.get(ident), since=since,
                        table=self.watch_kw.get("table", DEFAULT_TABLE),
                    )  # fmt: skip
                    stream = watch_fed_session(
                        self.client, tracker, self.feed, interval=self.interval, resync=self.resync,
                        max_silence=self.watch_kw.get("max_silence"), first_delay=delay,
                    )  # fmt: skip
                elif kind == "session":
                    stream = watch_session(
                        self.client, ident, interval=self.interval, since=since, first_delay=delay, poll=poll,
                        channel_id=self.channel_of.get(ident), **self.watch_kw,
                    )  # fmt: skip
                else:
                    kw = {k: v for k, v in self.watch_kw.items() if k != "since"}
                    stream = watch_channel(
                        self.client, ident, interval=self.interval, first_delay=delay, poll=poll,
                        since_for=self.cursors.get, claim=lambda sid: self.claim(sid, ident), **kw,
                    )  # fmt: skip
                # aclosing: a cancelled send must not leave the generator to be finalised by another task.
                async with contextlib.aclosing(stream) as transitions:
                    async for transition in transitions:
                        await self.send.send((scope, transition))
                        if kind == "channel" and transition.is_terminal:
                            self.followed.pop(transition.session_id, None)
            except SigmaError as exc:
                if self.on_error is None:
                    raise
                self.on_error(ident, exc)
            finally:
                if self.feed_scope is not None and not self.stay_open and set(self.scopes) <= {key}:
                    self.feed_scope.cancel()  # nothing else is watched: the feed would keep the monitor open
                if kind == "channel":
                    for sid in [s for s, c in self.followed.items() if c == ident]:
                        del self.followed[sid]
                if self.scopes.get(key) is scope:
                    del self.scopes[key]
                    self.done_scopes[key] = scope
                    if len(self.done_scopes) > self.max_buffer:
                        del self.done_scopes[next(iter(self.done_scopes))]

    async def join(self) -> None:
        self.finished = True
        runner = self.runner
        if runner is None:
            return
        await asyncio.wait([runner])
        self.receive.close()
        if runner.cancelled():
            return
        exc = runner.exception()
        if exc is not None:
            raise sole_exception(exc)

    async def close(self) -> None:
        self.finished = True
        runner = self.runner
        if runner is not None and not runner.done():
            runner.cancel()
            await asyncio.wait([runner])
        # A runner cancelled before its first step never opened (so never closed) the send side.
        self.send.close()
        self.receive.close()

    def abandon(self) -> None:
        self.finished = True
        if self.runner is not None and not self.runner.done():
            self.runner.cancel()
        self.send.close()
        self.receive.close()

