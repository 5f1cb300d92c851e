"""``Playback``: the ``client.playback`` namespace: probe or watch a channel's (or a URL's) HLS output."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable

from .._protocol import build_get_channel
from .._transport import PublicReader
from ..models import Channel
from ._models import PlaybackDecision, PlaybackReport
from ._prober import PlaybackWatch, Prober, check_playlist_url

__all__ = ["Playback"]


class Playback:
    """Is a channel's HLS output advancing? Reads its playlists, never with the vendor's credentials.

    ``target`` is a channel id (its ``live_stream_url``, read with one ``channels.get``) or an http(s) URL of a
    master or media playlist. Playlists are read by a ``PublicReader`` of its own (pool, concurrency cap,
    timeouts, 1 MiB cap), not through the API's transport or request budget.

    >>> report = await client.playback.probe(channel_id)
    >>> async for change in client.playback.watch(channel_id):   # each stall and resume, for ever
    ...     print(change.kind, change.renditions, change.reason)
    """

    __slots__ = ("_closed", "_get_channel", "_prober", "timeout")

    def __init__(self, get_channel: Callable[[str], Awaitable[Channel]], *, timeout: float = 10.0) -> None:
        self._get_channel = get_channel
        self._prober: Prober | None = None
        self._closed = False
        #: Seconds one playlist read may take, redirects included (set before the first read).
        self.timeout = timeout

    @property
    def prober(self) -> Prober:
        """The ``Prober`` every playback read of this client goes through (made on first use)."""
        if self._prober is None:
            if self._closed:
                raise RuntimeError("this SigmaClient is closed; make a new one")
            self._prober = Prober(PublicReader(timeout=self.timeout, read_timeout=min(5.0, self.timeout)))
        return self._prober

    async def url_of(self, target: str) -> str:
        """The playlist URL of ``target``: itself if it is a URL, else the channel's ``live_stream_url``."""
        check_target(target)
        if _is_url(target):
            return target
        channel = await self._get_channel(target)
        if not channel.live_stream_url:
            raise ValueError(f"channel {target} has no liveStreamUrl to read")
        return channel.live_stream_url

    async def probe(self, target: str, *, stall_after: float | None = None) -> PlaybackReport:
        """One look at ``target``'s output: the master, then every rendition. See ``PlaybackReport``."""
        check_target(target, stall_after=stall_after)
        return await self.prober.probe(await self.url_of(target), stall_after=stall_after)

    def watch(
        self, target: str, *, interval: float = 2.0, stall_after: float | None = None
    ) -> AsyncIterator[PlaybackDecision]:
        """Each stall and resume of ``target``'s output, for ever: each playlist is read about once per
        ``max(interval, its target duration)``, and stalled after ``stall_after`` seconds without an advance
        (default: 3 target durations). Arguments are checked at the call."""
        check_target(target, stall_after=stall_after, interval=interval)
        return self._watch(target, interval, stall_after)

    async def _watch(
        self, target: str, interval: float, stall_after: float | None
    ) -> AsyncGenerator[PlaybackDecision, None]:
        url = await self.url_of(target)
        async for decision in self.prober.watch(url, interval=interval, stall_after=stall_after):
            yield decision

    async def follow(self, target: str, *, interval: float = 2.0, stall_after: float | None = None) -> PlaybackWatch:
        """A ``PlaybackWatch`` of ``target``'s output, for a caller that schedules the reads itself."""
        check_target(target, stall_after=stall_after, interval=interval)
        return self.prober.follow(await self.url_of(target), interval=interval, stall_after=stall_after)

    async def aclose(self) -> None:
        """Close the playlist reader's pool. Safe to call twice."""
        self._closed = True
        prober, self._prober = self._prober, None
        if prober is not None:
            await prober.reader.aclose()


def check_target(target: str, *, stall_after: float | None = None, interval: float = 1.0) -> None:
    """``ValueError`` unless ``target`` is a channel id or an http(s) URL, and the durations are positive."""
    if not isinstance(target, str) or not target:
        raise ValueError(f"a playback target is a channel id or an http(s) URL, got {target!r}")
    if _is_url(target):
        check_playlist_url(target)
    elif "://" in target:
        raise ValueError(f"a playback target is a channel id or an http(s) URL, got {target!r}")
    else:
        build_get_channel(target)  # the id's own checks
    if stall_after is not None and not stall_after > 0:
        raise ValueError(f"stall_after must be a positive number of seconds, got {stall_after!r}")
    if not interval > 0:
        raise ValueError(f"interval must be a positive number of seconds, got {interval!r}")


def _is_url(target: str) -> bool:
    return target.lower().startswith(("http://", "https://"))
