"""Driving emulated sessions from outside the process: control routes, and a publisher that connects by itself.

A real session goes ``live`` when an encoder pushes RTMP; the emulator has no RTMP, so a session of a
standalone emulator (``sigma-async emulator``) is moved by one of these:

- ``AutoPublisher``: ``Emulator(auto_publish=5)`` / ``--auto-publish 5`` connects a simulated publisher to each
  session 5 emulated seconds after its channel starts.
- the control routes, authenticated exactly like the API (Basic credentials and ``X-App-Id``), where ``KEY`` is
  a channel id (meaning its open session) or a session id; each answers the session as ``GET /sessions`` lists it::

      POST /_emulator/sessions/KEY/publish     an encoder connects: the session goes live
      POST /_emulator/sessions/KEY/unpublish   the encoder goes away: the session ends after stopTimeout
      POST /_emulator/sessions/KEY/interrupt   the signal drops while the encoder stays connected
      POST /_emulator/sessions/KEY/restore     the signal comes back

  They answer 404 for an unknown key and 409 when the session cannot do that now (ended, already live, ...).

- a bulk route, for load: ``POST /_emulator/live-sessions`` with ``{"count": N}`` (and optionally ``"name"``,
  ``"stopTimeout"``) makes N channels, each started with an encoder connected, and answers
  ``{"sessionIds": [...], "channelIds": [...]}``: a hundred thousand live sessions in seconds, not in 300,000
  requests.

- the playback control routes, authenticated the same way, misbehave on a channel's HLS output (``_hls``) until
  resumed; each answers the output's state (``{"renditions": [{"name", "mediaSequence", "stalled",
  "failing"}, ...], ...}``)::

      POST /_emulator/channels/CHANNEL/playback/stall    [?rendition=720p]  hold one rendition (or all) still
      POST /_emulator/channels/CHANNEL/playback/fail     ?rendition=720p[&status=404]  answer that status
                                                         (rendition=master: the master playlist)
      POST /_emulator/channels/CHANNEL/playback/resume   undo every stall and fail of the channel
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import msgspec
from aiohttp import web

from ..models import ChannelCreate
from ._hls import HlsOrigin
from ._state import EmulatorError, EmulatorState, SessionState

__all__ = [
    "CONTROL_PATH",
    "CONTROL_ROUTES",
    "LIVE_SESSIONS_PATH",
    "PLAYBACK_CONTROL_PATH",
    "AutoPublisher",
    "add_control_routes",
    "add_live_sessions",
    "is_control_route",
]

CONTROL_PATH = "/_emulator/sessions/{key}"
LIVE_SESSIONS_PATH = "/_emulator/live-sessions"
PLAYBACK_CONTROL_PATH = "/_emulator/channels/{channel_id}/playback"
#: What each control route does, by the last segment of its path.
CONTROL_ROUTES: dict[str, Callable[[EmulatorState, str], SessionState]] = {
    "publish": EmulatorState.connect_publisher,
    "unpublish": EmulatorState.disconnect_publisher,
    "interrupt": EmulatorState.interrupt_signal,
    "restore": EmulatorState.restore_signal,
}
_encoder = msgspec.json.Encoder()


def add_control_routes(app: web.Application, state: EmulatorState, origin: HlsOrigin | None = None) -> None:
    """Serve the control routes on ``app``, whose middleware authenticates them as it does the API's."""
    for name, action in CONTROL_ROUTES.items():
        app.router.add_post(f"{CONTROL_PATH}/{name}", _handler(state, action))
    app.router.add_post(LIVE_SESSIONS_PATH, _live_sessions_handler(state))
    if origin is not None:
        for name in ("stall", "fail", "resume"):
            app.router.add_post(f"{PLAYBACK_CONTROL_PATH}/{name}", _playback_handler(origin, name))


def is_control_route(route: str) -> bool:
    """Whether a journal route name (``"POST /_emulator/sessions/{key}/publish"``) is a control route: faults
    armed for ``"*"`` leave these alone, since they drive the test rather than stand for the API."""
    return route.startswith("POST /_emulator/")


def _handler(
    state: EmulatorState, action: Callable[[EmulatorState, str], SessionState]
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        # EmulatorError (404 unknown key, 409 wrong moment) becomes the API's error body in the middleware.
        session = action(state, request.match_info["key"])
        return web.Response(body=_encoder.encode(session.to_model()), content_type="application/json")

    return handle


def add_live_sessions(
    state: EmulatorState, count: int, *, name: str = "live", stop_timeout: int = 86_400
) -> list[SessionState]:
    """``count`` new channels, each started with a publisher connected: ``count`` live sessions, in one go.

    Each goes through ``create_channel``, ``start_channel`` and ``connect_publisher`` (its events, statuses and
    stamps are theirs), without a request each. Channels are named ``{name}-1``, ...; the long default
    ``stop_timeout`` keeps a session whose signal is later dropped from ending by itself.
    """
    if count < 0:
        raise EmulatorError(400, f"count must be >= 0, got {count}")
    if not name.strip():
        raise EmulatorError(422, "name must not be empty")
    if stop_timeout < 0:
        raise EmulatorError(422, "stopTimeout must be a non-negative number of seconds")
    spec = ChannelCreate(name=name, stop_timeout=stop_timeout).to_body()
    sessions = []
    for i in range(1, count + 1):
        channel = state.create_channel(msgspec.structs.replace(spec, name=f"{name}-{i}"))
        state.start_channel(channel.id)
        sessions.append(state.connect_publisher(channel.id))
    return sessions


class _LiveSessions(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    count: int
    name: str = "live"
    stop_timeout: int = 86_400


def _live_sessions_handler(state: EmulatorState) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        try:
            spec = msgspec.json.decode(await request.read(), type=_LiveSessions)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise EmulatorError(400, f'expected {{"count": N}} (optional "name", "stopTimeout"): {exc}') from None
        sessions = add_live_sessions(state, spec.count, name=spec.name, stop_timeout=spec.stop_timeout)
        body = {"sessionIds": [s.id for s in sessions], "channelIds": [s.channel_id for s in sessions]}
        return web.Response(body=_encoder.encode(body), content_type="application/json")

    return handle


def _playback_handler(origin: HlsOrigin, action: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        channel_id = request.match_info["channel_id"]
        rendition = request.query.get("rendition") or None
        if action == "stall":
            origin.stall(channel_id, rendition)
        elif action == "resume":
            origin.resume(channel_id)
        else:
            if rendition is None:
                raise EmulatorError(400, "fail needs ?rendition=NAME (or master)")
            try:
                status = int(request.query.get("status", "404"))
            except ValueError:
                raise EmulatorError(400, "status must be a whole number") from None
            origin.fail(channel_id, rendition, status)
        return web.Response(body=_encoder.encode(origin.describe(channel_id)), content_type="application/json")

    return handle


class AutoPublisher:
    """Connects a simulated publisher to each session ``delay`` emulated seconds after its channel starts.

    Installed on an ``EmulatorState``: the state tells it of each new session and runs it before its own
    timers on every tick, so a publisher due before a session's ``stopTimeout`` connects first, even when a
    manual clock jumps past both. A session that has had a publisher already, or has ended, is left alone.
    """

    def __init__(self, delay: float) -> None:
        if not delay >= 0 or delay == float("inf"):
            raise ValueError(f"auto_publish must be a non-negative number of seconds, got {delay!r}")
        self.delay = timedelta(seconds=delay)
        self._due: list[tuple[datetime, int, str]] = []
        self._order = itertools.count()  # ties keep the order the sessions started in
        self._state: EmulatorState | None = None

    def install(self, state: EmulatorState) -> None:
        self._state = state
        state.on_session_start = self.session_started
        state.before_tick = self.run_due
        state.next_scheduled = self.next_due

    def session_started(self, session: SessionState) -> None:
        assert self._state is not None, "installed before any session starts"
        # From the clock, not ``created_at``: that may be nudged a tick later to keep sessions ordered.
        due = self._state.clock.now() + self.delay
        heapq.heappush(self._due, (due, next(self._order), session.id))
        if self._state.on_deadline is not None:
            self._state.on_deadline()  # the real-time timer task sleeps until the earliest timer: wake it

    def next_due(self) -> datetime | None:
        return self._due[0][0] if self._due else None

    def run_due(self) -> None:
        state = self._state
        if state is None:
            return
        now = state.clock.now()
        while self._due and self._due[0][0] <= now:
            at, _, session_id = heapq.heappop(self._due)
            session = state.sessions.get(session_id)
            if session is None or session.ended or session.started_at is not None:
                continue
            if session.deadline is not None and session.deadline <= at:
                continue  # the session timed out before its publisher came: the state's tick ends it
            state.connect_publisher(session_id)
