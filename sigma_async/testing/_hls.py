"""The emulator's HLS output: each channel's ``liveStreamUrl`` serves a master and three 1-second renditions.

A session's output starts when its first publisher connects (a fresh packager: media sequence 0), advances
with the emulator's clock while a publisher is connected and the signal is not interrupted, freezes otherwise,
and ends with ``EXT-X-ENDLIST`` when the session ends. It stays served until the channel's next session
publishes. ``stall``, ``resume`` and ``fail`` misbehave on purpose (``emu.stall_playback`` ...). Playlists only:
segments are not served. Like a CDN, these routes ask for no credentials.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

from aiohttp import web

from ._records import SessionState
from ._state import EmulatorError, EmulatorState

__all__ = [
    "OUTPUT_ROUTES",
    "RENDITIONS",
    "SEGMENT_SECONDS",
    "WINDOW",
    "HlsOrigin",
    "add_output_routes",
    "is_output_route",
]

#: name, bandwidth, resolution: the ladder of the vendor's default transcode profiles.
RENDITIONS = (("1080p", 5_500_000, "1920x1080"), ("720p", 3_300_000, "1280x720"), ("480p", 1_100_000, "854x480"))
SEGMENT_SECONDS = 1
#: Segments a media playlist lists (a sliding window, as live packagers keep).
WINDOW = 6
MASTER_NAME = "master"
#: The routes of the output, as the journal names them.
OUTPUT_ROUTES = ("GET /manifest/{channel_id}/master.m3u8", "GET /manifest/{channel_id}/{rendition}/index.m3u8")
_NAMES = tuple(name for name, _, _ in RENDITIONS)
_CONTENT_TYPE = "application/vnd.apple.mpegurl"


@dataclass
class _Track:
    """One rendition's production: seconds made before ``since``, and producing since then (None: frozen)."""

    produced: float = 0.0
    since: datetime | None = None
    last_made: datetime | None = None  # when its newest segment was completed, as of the last freeze

    def total(self, now: datetime) -> float:
        running = (now - self.since).total_seconds() if self.since is not None else 0.0
        return self.produced + max(0.0, running)

    def segments(self, now: datetime) -> int:
        return math.floor(self.total(now) / SEGMENT_SECONDS + 1e-9)

    def made_at(self, now: datetime, started: datetime) -> datetime:
        """When the newest complete segment was made (the playlist's last change)."""
        count = self.segments(now)
        if self.since is not None and count * SEGMENT_SECONDS > self.produced:
            return self.since + timedelta(seconds=count * SEGMENT_SECONDS - self.produced)
        return self.last_made or started

    def run(self, now: datetime, running: bool, started: datetime) -> None:
        if self.since is not None:
            self.last_made = self.made_at(now, started)
            self.produced = self.total(now)
            self.since = None
        if running:
            self.since = now


@dataclass
class _Output:
    """The packager output of one session."""

    session: SessionState
    started: datetime
    tracks: dict[str, _Track] = field(default_factory=lambda: {name: _Track() for name in _NAMES})


class HlsOrigin:
    """Every channel's HLS output, moved by the emulator's state (installed as its ``on_output_change``)."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        self._outputs: dict[str, _Output] = {}  # channel id -> its newest session's output
        self._stalled: dict[str, set[str]] = {}  # channel id -> renditions held still
        self._failing: dict[str, dict[str, int]] = {}  # channel id -> rendition (or "master") -> status
        state.on_output_change = self.session_changed

    # -- controls -------------------------------------------------------------------------------------------

    def stall(self, channel_id: str, rendition: str | None = None) -> None:
        """Hold ``rendition`` (None: every one) still: its playlist stops advancing, as a stuck transcoder's."""
        self.state.channel(channel_id)
        names = _NAMES if rendition is None else (_known(rendition),)
        self._stalled.setdefault(channel_id, set()).update(names)
        self._sync(channel_id)

    def resume(self, channel_id: str) -> None:
        """Undo every ``stall`` and ``fail`` of the channel."""
        self.state.channel(channel_id)
        self._stalled.pop(channel_id, None)
        self._failing.pop(channel_id, None)
        self._sync(channel_id)

    def fail(self, channel_id: str, rendition: str, status: int = 404) -> None:
        """Answer ``status`` for ``rendition``'s playlist (``"master"``: the master's) until ``resume``."""
        self.state.channel(channel_id)
        if not 400 <= status <= 599:
            raise EmulatorError(400, f"status must be an HTTP error status (4xx or 5xx), got {status}")
        name = rendition if rendition == MASTER_NAME else _known(rendition)
        self._failing.setdefault(channel_id, {})[name] = status

    def describe(self, channel_id: str) -> dict[str, object]:
        """The channel's output now, as the control routes answer it."""
        self.state.channel(channel_id)
        output = self._outputs.get(channel_id)
        now = self.state.clock.now()
        stalled = self._stalled.get(channel_id, set())
        failing = self._failing.get(channel_id, {})
        renditions = [
            {
                "name": name,
                "mediaSequence": max(0, output.tracks[name].segments(now) - WINDOW) if output else None,
                "segments": output.tracks[name].segments(now) if output else 0,
                "stalled": name in stalled,
                "failing": failing.get(name),
            }
            for name in _NAMES
        ]
        return {
            "channelId": channel_id,
            "sessionId": output.session.id if output else None,
            "ended": bool(output and output.session.ended),
            "masterFailing": failing.get(MASTER_NAME),
            "renditions": renditions,
        }

    # -- the state tells us -------------------------------------------------------------------------------

    def session_changed(self, session: SessionState) -> None:
        """A publisher came or went, the signal dropped or came back, or the session ended."""
        channel_id = session.channel_id
        output = self._outputs.get(channel_id)
        if (output is None or output.session is not session) and session.publisher_connected:
            # A new session's first publisher: a fresh packager, counting from 0 again.
            self._outputs[channel_id] = _Output(session, self.state.clock.now())
        self._sync(channel_id)

    def _sync(self, channel_id: str) -> None:
        output = self._outputs.get(channel_id)
        if output is None:
            return
        session = output.session
        on_air = session.publisher_connected and session.signal_ok and not session.ended
        stalled = self._stalled.get(channel_id, set())
        now = self.state.clock.now()
        for name, track in output.tracks.items():
            track.run(now, on_air and name not in stalled, output.started)

    # -- what is served -------------------------------------------------------------------------------------

    def master(self, channel_id: str) -> web.Response:
        output = self._serving(channel_id, MASTER_NAME)
        lines = ["#EXTM3U", "#EXT-X-VERSION:3"]
        for name, bandwidth, resolution in RENDITIONS:
            lines += [f"#EXT-X-STREAM-INF:BANDWIDTH={bandwidth},RESOLUTION={resolution}", f"{name}/index.m3u8"]
        return self._playlist(lines, output.started)

    def media(self, channel_id: str, rendition: str) -> web.Response:
        if rendition not in _NAMES:
            raise EmulatorError(404, f"no rendition {rendition!r}")
        output = self._serving(channel_id, rendition)
        now = self.state.clock.now()
        track = output.tracks[rendition]
        count = track.segments(now)
        first = max(0, count - WINDOW)
        made = track.made_at(now, output.started)
        lines = [
            "#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{SEGMENT_SECONDS}",
            f"#EXT-X-MEDIA-SEQUENCE:{first}",
        ]  # fmt: skip
        if count > first:
            start = made - timedelta(seconds=(count - first) * SEGMENT_SECONDS)
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{start.isoformat(timespec='milliseconds').replace('+00:00', 'Z')}")
        for number in range(first, count):
            lines += [f"#EXTINF:{SEGMENT_SECONDS:.3f},", f"seg_{number}.ts"]
        if output.session.ended:
            lines.append("#EXT-X-ENDLIST")
        return self._playlist(lines, made)

    def _serving(self, channel_id: str, name: str) -> _Output:
        self.state.channel(channel_id)
        status = self._failing.get(channel_id, {}).get(name)
        if status is not None:
            raise EmulatorError(status, f"{name} playlist failing (injected)")
        output = self._outputs.get(channel_id)
        if output is None:
            raise EmulatorError(404, f"channel {channel_id} has no output yet: nothing has been published")
        return output

    def _playlist(self, lines: list[str], changed: datetime) -> web.Response:
        headers = {
            "Last-Modified": _http_date(changed),
            # The emulator's clock, not the machine's: ages come out in emulated seconds at any speed.
            "Date": _http_date(self.state.clock.now()),
            "Cache-Control": "no-cache",
        }
        return web.Response(text="\n".join(lines) + "\n", content_type=_CONTENT_TYPE, headers=headers)


def add_output_routes(app: web.Application, origin: HlsOrigin) -> None:
    """Serve the output routes on ``app`` (the middleware lets them through without credentials)."""

    def handler(serve: Callable[[web.Request], web.Response]) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            return serve(request)

        return handle

    master, media = OUTPUT_ROUTES
    app.router.add_get(master.split(" ", 1)[1], handler(lambda r: origin.master(r.match_info["channel_id"])))
    app.router.add_get(
        media.split(" ", 1)[1],
        handler(lambda r: origin.media(r.match_info["channel_id"], r.match_info["rendition"])),
    )


def is_output_route(route: str | None) -> bool:
    """Whether a journal route name is one of the output's: served like a CDN, without credentials or faults."""
    return route in OUTPUT_ROUTES


def _known(rendition: str) -> str:
    if rendition not in _NAMES:
        raise EmulatorError(404, f"no rendition {rendition!r}; renditions are {', '.join(_NAMES)}")
    return rendition


def _http_date(at: datetime) -> str:
    return format_datetime(at.astimezone(timezone.utc), usegmt=True)
