"""``Emulator``: a stateful fake Sigma Livestream API served over loopback, with a clock, faults and a journal."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web

from .._config import Credentials
from ..models import Channel, ChannelCreate, Event
from ._app import BASE_PATH, build_app
from ._clock import Clock
from ._control import AutoPublisher, add_live_sessions
from ._faults import FaultPlan, Journal
from ._hls import HlsOrigin
from ._state import ChannelState, EmulatorState, SessionState
from ._throttle import Throttle

if TYPE_CHECKING:
    from .._client import SigmaClient

__all__ = ["DEFAULT_APP_ID", "DEFAULT_SECRET_KEY", "DEFAULT_USERNAME", "Emulator"]

T = TypeVar("T")

#: The emulator's own throwaway credentials, used unless others are given.
DEFAULT_USERNAME = "emulator"
DEFAULT_SECRET_KEY = "emulator-secret"
DEFAULT_APP_ID = "emulator-app"


class Emulator:
    """A fake Sigma Livestream API on loopback: real HTTP, in-memory state, controllable time.

    >>> async with Emulator(manual_clock=True) as emu:
    ...     async with emu.client() as client:
    ...         ch = await client.channels.create(ChannelCreate(name="news"))
    ...         await client.channels.start(ch.id)
    ...         emu.connect_publisher(ch.id)        # the session goes live
    ...         emu.disconnect_publisher(ch.id)     # the signal is lost...
    ...         emu.clock.advance(ch.stop_timeout)  # ... and after stopTimeout the session has ended
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        username: str = DEFAULT_USERNAME,
        secret_key: str = DEFAULT_SECRET_KEY,
        app_id: str = DEFAULT_APP_ID,
        speed: float = 1.0,
        manual_clock: bool = False,
        seed: int | None = None,
        start_time: datetime | None = None,
        journal_limit: int = 10_000,
        auto_publish: float | None = None,
        throttle: float | None = None,
        throttle_window: float | None = None,
        app_wide_listings: bool = True,
        max_per_page: int | None = None,
        latency: float = 0.0,
    ) -> None:
        self.credentials = Credentials(username=username, secret_key=secret_key, app_id=app_id)
        self.host = host
        self.port = port
        rng = random.Random(seed)
        self.clock = Clock(start=start_time, speed=speed, manual=manual_clock)
        self.state = EmulatorState(self.clock, app_id=app_id, rng=random.Random(rng.getrandbits(64)))
        #: ``app_wide_listings=False``: event listings without ``q`` answer 400 (to test ``poll="auto"``).
        self.state.app_wide_listings = app_wide_listings
        #: ``max_per_page=N``: listings hold at most N items whatever ``perPage`` asked, and say so.
        self.state.max_per_page = max_per_page
        if not 0 <= latency < float("inf"):
            raise ValueError(f"latency must be a number of seconds >= 0, got {latency!r}")
        #: ``latency=S``: every API answer is held back S real seconds (settable later: ``emu.state.latency``).
        self.state.latency = latency
        self.faults = FaultPlan(random.Random(rng.getrandbits(64)))
        #: ``throttle=R``: answer 429 past R requests a second (see ``throttle()``); with ``throttle_window=W``,
        #: past R * W requests in any W seconds.
        self.throttling = Throttle()
        if throttle is not None:
            self.throttling.set(throttle, window=throttle_window)
        self.journal = Journal(limit=journal_limit)
        #: Each channel's HLS output at its ``liveStreamUrl`` (see ``stall_playback``).
        self.hls = HlsOrigin(self.state)
        self._runner: web.AppRunner | None = None
        self._url: str | None = None
        self._timers: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self.clock.subscribe(self.state.tick)
        # A jump of the clock or a new deadline may bring the next timer closer than the timer task expects.
        self.clock.subscribe(self._poke)
        self.state.on_deadline = self._poke
        #: ``auto_publish=N``: a simulated publisher connects to each session N emulated seconds after its start.
        self.auto_publisher = AutoPublisher(auto_publish) if auto_publish is not None else None
        if self.auto_publisher is not None:
            self.auto_publisher.install(self.state)

    # -- lifecycle ------------------------------------------------------------------------------------------

    async def start(self) -> Emulator:
        """Bind the port and serve; ``url`` is known from here on."""
        if self._runner is not None:
            raise RuntimeError("the emulator is already running")
        app = build_app(self.state, self.faults, self.journal, self.credentials, self.throttling, self.hls)
        # Handler cancellation lets a client that gives up on a slow (latency-faulted) answer free the server;
        # the short shutdown timeout keeps close() quick even then.
        runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.25, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self.port = port
        self._url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
        self.state.public_url = self._url
        if not self.clock.manual:
            self._wake = asyncio.Event()
            self._timers = asyncio.create_task(self._run_timers(), name="sigma-emulator-timers")
        return self

    async def close(self) -> None:
        """Stop serving and drop every connection. Safe to call twice."""
        if self._timers is not None:
            self._timers.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timers
            self._timers = None
            self._wake = None
        runner, self._runner = self._runner, None
        if runner is not None:
            # Let connections already accepted finish registering before the listener closes: on Python 3.11
            # one still being set up when it closes is never closed (a ResourceWarning at collection).
            for _ in range(3):
                await asyncio.sleep(0)
            await runner.cleanup()

    async def __aenter__(self) -> Emulator:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- how to reach it ------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL to give a client, e.g. ``http://127.0.0.1:54321`` (the API lives under /api/livestream)."""
        if self._url is None:
            raise RuntimeError("the emulator is not started: use `async with Emulator() as emu` or await start()")
        return self._url

    @property
    def api_url(self) -> str:
        return self.url + BASE_PATH

    @property
    def username(self) -> str:
        return self.credentials.username

    @property
    def secret_key(self) -> str:
        return self.credentials.secret_key

    @property
    def app_id(self) -> str:
        return self.credentials.app_id

    def client(self, **kwargs: Any) -> SigmaClient:
        """A ``SigmaClient`` bound to this emulator; ``kwargs`` go to its constructor (``timeout``, ``retry``...)."""
        from .._client import SigmaClient

        return SigmaClient(
            username=self.username, secret_key=self.secret_key, app_id=self.app_id, base_url=self.url, **kwargs
        )

    # -- state, for arranging and asserting -----------------------------------------------------------------

    @property
    def channels(self) -> dict[str, ChannelState]:
        return self.state.channels

    @property
    def sessions(self) -> dict[str, SessionState]:
        return self.state.sessions

    def create_channel(self, name: str = "emulated", **kwargs: Any) -> Channel:
        """Create a channel without going through HTTP; ``kwargs`` are those of ``ChannelCreate``."""
        return self.state.create_channel(ChannelCreate(name=name, **kwargs).to_body()).to_model()

    def start_channel(self, channel_id: str) -> SessionState:
        """Start a channel without going through HTTP; returns the new session."""
        self.state.start_channel(channel_id)
        return self.state.resolve(channel_id)

    def stop_channel(self, channel_id: str) -> SessionState:
        """Stop a channel as its user would, without going through HTTP; returns the ended session."""
        session_id = self.state.channel(channel_id).current_session_id
        self.state.stop_channel(channel_id)
        assert session_id is not None  # stop_channel refuses a channel without one
        return self.state.sessions[session_id]

    def add_live_sessions(self, count: int, *, name: str = "live", stop_timeout: int = 86_400) -> list[SessionState]:
        """``count`` channels, each started with an encoder connected: ``count`` live sessions, without a request
        each (a hundred thousand take seconds). Channels are named ``{name}-1``, ``{name}-2``, ..."""
        return add_live_sessions(self.state, count, name=name, stop_timeout=stop_timeout)

    def delete_channel(self, channel_id: str) -> None:
        """Delete a channel as a user would in the console, without going through HTTP (its open session ends)."""
        self.state.delete_channel(channel_id)

    def connect_publisher(self, key: str) -> SessionState:
        """An encoder starts pushing to the channel (or session) ``key``: the session goes ``live``."""
        return self.state.connect_publisher(key)

    def disconnect_publisher(self, key: str) -> SessionState:
        """The encoder goes away; without a new one the session ends after the channel's ``stopTimeout``."""
        return self.state.disconnect_publisher(key)

    def interrupt_signal(self, key: str) -> SessionState:
        """The signal drops while the encoder stays connected: ``signal_interrupted``, status ``interrupted``."""
        return self.state.interrupt_signal(key)

    def restore_signal(self, key: str) -> SessionState:
        """The signal comes back: ``signal_restored``, status ``live``."""
        return self.state.restore_signal(key)

    def add_event(
        self,
        session_id: str,
        action: str,
        *,
        message: str | None = None,
        actor: str | None = None,
        at: datetime | None = None,
        bump_session: bool = True,
    ) -> Event:
        """Append any event to a session (unknown actions too), stamped by the emulator's clock unless ``at``.

        ``bump_session=False`` leaves the session's row (its ``updatedAt`` in the sessions listing) as it was.
        """
        return self.state.add_event(
            session_id, action, message=message, actor=actor, at=at, bump_session=bump_session
        )

    def add_late_event(self, session_id: str, action: str, *, created_at: datetime) -> Event:
        """An event written now but dated ``created_at``, earlier than events already listed."""
        return self.state.add_late_event(session_id, action, created_at=created_at)

    def edit_event(self, session_id: str, event_id: str, *, message: str | None = None) -> Event:
        """Edit a listed event: its ``updatedAt`` moves to now."""
        return self.state.edit_event(session_id, event_id, message=message)

    def add_malformed_event(self, session_id: str, action: str, /, **wire: object) -> Event:
        """An event listed with wire fields replaced, e.g. ``created_at=None`` or a naive ``updated_at``."""
        return self.state.add_malformed_event(session_id, action, **wire)

    def throttle(
        self,
        rate: float | None,
        *,
        burst: float | None = None,
        window: float | None = None,
        retry_after: float | None = None,
    ) -> Throttle:
        """Answer 429 past ``rate`` requests a second, bursts of ``burst`` allowed (None: stop throttling); with
        ``window=W``, past ``rate * W`` requests in any ``W`` seconds (a sliding window).

        >>> emu.throttle(100)
        >>> emu.throttle(100, window=1)
        >>> emu.throttling.refused    # requests turned away so far
        """
        self.throttling.set(rate, burst=burst, window=window, retry_after=retry_after)
        return self.throttling

    def stall_playback(self, channel_id: str, rendition: str | None = None) -> None:
        """Hold the channel's HLS output still (one rendition, or all): its playlists stop advancing while the
        API still says ``live``, as with a stuck transcoder. Until ``resume_playback``."""
        self.hls.stall(channel_id, rendition)

    def resume_playback(self, channel_id: str) -> None:
        """Undo every ``stall_playback`` and ``fail_playback`` of the channel."""
        self.hls.resume(channel_id)

    def fail_playback(self, channel_id: str, rendition: str, status: int = 404) -> None:
        """Answer ``status`` for one rendition's playlist (``"master"``: the master's) until ``resume_playback``."""
        self.hls.fail(channel_id, rendition, status)

    def set_status(self, session_id: str, status: str) -> SessionState:
        """Set a session's status to any string, known to the SDK or not."""
        return self.state.set_status(session_id, status)

    async def wait_for(self, predicate: Callable[[], T], *, timeout: float = 5.0, interval: float = 0.002) -> T:
        """Wait until ``predicate()`` is truthy and return it; ``TimeoutError`` after ``timeout`` seconds.

        >>> await emu.wait_for(lambda: emu.journal.count("GET /events") >= 3)
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not (result := predicate()):
            if loop.time() >= deadline:
                raise TimeoutError(f"condition not met within {timeout:g} s")
            await asyncio.sleep(interval)
        return result

    def __repr__(self) -> str:
        where = self._url or "not started"
        return f"Emulator({where}, channels={len(self.channels)}, sessions={len(self.sessions)}, {self.clock!r})"

    # -- timers in real time --------------------------------------------------------------------------------

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _run_timers(self) -> None:
        # Sleep until the next deadline (in wall seconds at this speed) or until a new deadline is set.
        wake = self._wake
        assert wake is not None
        while True:
            self.state.tick()
            deadline = self.state.next_deadline()
            delay = None
            if deadline is not None:
                delay = (self.clock.wall_seconds((deadline - self.clock.now()).total_seconds()) or 0.0) + 0.0005
            wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(wake.wait(), delay)
