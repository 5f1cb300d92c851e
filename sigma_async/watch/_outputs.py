"""Playback health in the engine: each session's HLS output judged from its ``Live`` to its ``Ended``.

The judge and the reads are ``sigma_async.playback``'s (``PlaybackWatch``); this steps one per session on the
engine's loop and clock, and turns its decisions into ``PlaybackStalled`` and ``PlaybackResumed``. Playlist
reads go through the client's credential-free ``PublicReader`` (its own pool and cap), never the API's budget;
the one API read is the channel's ``liveStreamUrl``, once per channel.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..errors import SigmaError
from ..playback import Prober, to_transition
from ._items import WatchedOutput, WatchedSession
from ._reads import describe

if TYPE_CHECKING:
    from ._engine import Engine

__all__ = ["Outputs"]

logger = logging.getLogger("sigma_async")


class Outputs:
    """The playback side of one engine: a ``WatchedOutput`` per session on air, stepped when due."""

    def __init__(self, engine: Engine, client: Any, stall_after: float | None) -> None:
        namespace = getattr(client, "playback", None)
        if namespace is None:
            raise ValueError("playback=True needs a SigmaClient: its client.playback reads the HLS output")
        if stall_after is not None and not stall_after > 0:
            raise ValueError(f"playback_stall_after must be a positive number of seconds, got {stall_after!r}")
        self.engine = engine
        self.client = client
        self.stall_after = stall_after
        self._namespace = namespace
        self._prober: Prober | None = None
        self._urls: dict[str, str] = {}

    def start(self, watched: WatchedSession) -> None:
        """The session is on air: judge its output from now on."""
        output = watched.output = WatchedOutput(watched)
        output.last_ok = self.engine.now()
        self.engine.schedule(output, self.engine.now())

    async def poll(self, output: WatchedOutput) -> None:
        engine = self.engine
        watched = output.session
        try:
            if output.follower is None:
                url = await engine.guarded(output, self._url_of(watched.tracker.channel_id))
                output.follower = self._prober_now().follow(
                    url, interval=engine.interval, stall_after=self.stall_after
                )
            decisions = await output.follower.step(engine.now())
        except SigmaError as exc:
            output.busy = False
            engine.failed(output, exc)
            return
        except ValueError as exc:  # no liveStreamUrl, or not an http(s) one: nothing to judge
            output.busy = False
            self._stop(output, str(exc))
            return
        output.busy = False
        if not output.alive or not watched.alive:
            return  # ended meanwhile: nothing of the output after Ended
        output.succeeded(engine.now())
        transitions = []
        for decision in decisions:
            if decision.kind == "stalled":
                output.stalls += 1
                count = output.stalls
            else:
                output.resumes += 1
                count = output.resumes
            previous, cursor = watched.tracker.note_outside(decision.transition_kind)
            transitions.append(to_transition(
                decision, session_id=watched.ident, at=engine.clock.wall(), count=count,
                channel_id=watched.tracker.channel_id, previous=previous, cursor=cursor,
            ))  # fmt: skip
        engine.emit(transitions)
        engine.schedule(output, max(engine.now(), output.follower.next_due()))

    def give_up(self, output: WatchedOutput, exc: SigmaError) -> bool:
        """The channel's URL cannot be read for good (404, 403): the session goes on, its output unjudged."""
        self._stop(output, describe(exc))
        return False

    def _stop(self, output: WatchedOutput, why: str) -> None:
        output.alive = False
        logger.warning("playback of session %s: %s; its output is not judged", output.session.ident, why)

    async def _url_of(self, channel_id: str | None) -> str:
        if channel_id is None:
            raise ValueError("the session's channel is not known")
        url = self._urls.get(channel_id)
        if url is None:
            channel = await self.client.channels.get(channel_id)
            if not channel.live_stream_url:
                raise ValueError(f"channel {channel_id} has no liveStreamUrl")
            url = self._urls[channel_id] = channel.live_stream_url
        return url

    def _prober_now(self) -> Prober:
        if self._prober is None:
            clock = self.engine.clock
            self._prober = Prober(self._namespace.prober.reader, clock=clock.now, wall=clock.wall)
        return self._prober
