"""``Prober``: reads an HLS output's playlists through the credential-free reader; one look (``probe``) or
many (``PlaybackWatch``, ``Prober.watch``), judged by ``PlaybackJudge``. Every failure becomes an ``error``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timezone
from urllib.parse import urlsplit

import msgspec

from .._transport import Fetched, FetchError, PublicReader
from ._judge import STALL_FACTOR, PlaybackJudge
from ._models import (
    MASTER,
    PlaybackDecision,
    PlaybackReport,
    PlaybackState,
    RenditionRead,
    RenditionReport,
    RenditionState,
)
from ._playlist import (
    MediaPlaylist,
    NotAPlaylist,
    Variant,
    modified_age,
    parse_playlist,
    program_age,
    rendition_names,
)

__all__ = ["MasterRead", "PlaybackWatch", "Prober", "check_playlist_url"]

Clock = Callable[[], float]
WallClock = Callable[[], datetime]
Sleep = Callable[[float], Awaitable[None]]

#: Reads due within this many seconds of each other start in one wake-up.
_BATCH = 0.05


class MasterRead(msgspec.Struct, frozen=True, kw_only=True):
    """A read of the target playlist: the renditions a master lists, or, when the target is itself a media
    playlist, that one rendition and its first read (``media``); or the ``error`` that stopped it."""

    url: str
    at: float
    renditions: list[Variant] = msgspec.field(default_factory=list)
    media: RenditionRead | None = None
    error: str | None = None


def check_playlist_url(url: str) -> str:
    """``url`` if it is an http(s) URL with a host; ``ValueError`` otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"a playlist URL must be http(s) with a host, got {url!r}")
    return url


class Prober:
    """Reads playlists with a ``PublicReader`` (no credentials, its own pool): never raises for what the origin
    does; a failure is the ``error`` of that read (``"HTTP 404"``, ``"timeout"``, ``"not a playlist"``...).

    ``clock`` (monotonic seconds) stamps each read for the judge; ``wall`` gives the time ages are measured
    against when the origin sends no ``Date``.
    """

    def __init__(
        self, reader: PublicReader, *, clock: Clock = time.monotonic, wall: WallClock | None = None
    ) -> None:
        self.reader = reader
        self.clock = clock
        self.wall: WallClock = wall or _utcnow

    async def read_master(self, url: str) -> MasterRead:
        """Read the target: a master (its renditions) or a media playlist (itself, as the one rendition)."""
        fetched, error = await self._get(url)
        at = self.clock()
        if fetched is None:
            return MasterRead(url=url, at=at, error=error)
        try:
            parsed = parse_playlist(fetched.body, fetched.url)
        except NotAPlaylist:
            return MasterRead(url=url, at=at, error="not a playlist")
        if isinstance(parsed, list):
            return MasterRead(url=url, at=at, renditions=parsed)
        name = rendition_names([fetched.url])[0]
        media = self._rendition_read(name, at, fetched, parsed)
        return MasterRead(url=url, at=at, renditions=[Variant(name=name, url=url)], media=media)

    async def read_rendition(self, name: str, url: str) -> RenditionRead:
        """One read of a rendition's media playlist."""
        fetched, error = await self._get(url)
        at = self.clock()
        if fetched is None:
            return RenditionRead(name=name, at=at, error=error)
        try:
            parsed = parse_playlist(fetched.body, fetched.url)
        except NotAPlaylist:
            return RenditionRead(name=name, at=at, error="not a playlist")
        if isinstance(parsed, list):
            return RenditionRead(name=name, at=at, error="not a playlist")  # a master where a media one should be
        return self._rendition_read(name, at, fetched, parsed)

    async def probe(self, url: str, *, stall_after: float | None = None) -> PlaybackReport:
        """One look: the master, then every rendition's media playlist (concurrently)."""
        master = await self.read_master(check_playlist_url(url))
        when = self.wall()
        if master.error is not None:
            return PlaybackReport(url=url, state="unreachable", renditions=[], error=master.error, at=when)
        if master.media is not None:
            reads = [master.media]
        else:
            reads = list(await asyncio.gather(*(self.read_rendition(v.name, v.url) for v in master.renditions)))
        reports = [_report(v, r, stall_after) for v, r in zip(master.renditions, reads, strict=True)]
        return PlaybackReport(url=url, state=_overall(reports), renditions=reports, at=when)

    def follow(self, url: str, *, interval: float = 2.0, stall_after: float | None = None) -> PlaybackWatch:
        """A ``PlaybackWatch`` of ``url``: the judge and the reads, stepped by its caller."""
        return PlaybackWatch(self, check_playlist_url(url), interval=interval, stall_after=stall_after)

    async def watch(
        self, url: str, *, interval: float = 2.0, stall_after: float | None = None, sleep: Sleep = asyncio.sleep
    ) -> AsyncIterator[PlaybackDecision]:
        """Yield each stall and resume of ``url``'s output, for ever (reading each playlist about once per
        ``max(interval, target duration)``)."""
        follower = self.follow(url, interval=interval, stall_after=stall_after)
        while True:
            for decision in await follower.step():
                yield decision
            await sleep(min(max(0.0, follower.next_due() - self.clock()), interval))

    # -- helpers --------------------------------------------------------------------------------------------

    async def _get(self, url: str) -> tuple[Fetched | None, str | None]:
        try:
            fetched = await self.reader.get(url)
        except FetchError as exc:
            return None, exc.reason
        if not 200 <= fetched.status < 300:
            return None, f"HTTP {fetched.status}"
        return fetched, None

    def _rendition_read(self, name: str, at: float, fetched: Fetched, parsed: MediaPlaylist) -> RenditionRead:
        now = self.wall()
        return RenditionRead(
            name=name, at=at, media_sequence=parsed.media_sequence, newest_segment=parsed.newest_segment,
            segments=parsed.segments, target_duration=parsed.target_duration, ended=parsed.ended,
            age=modified_age(last_modified=fetched.last_modified, date=fetched.date, now=now),
            program_age=program_age(newest_end=parsed.newest_end, date=fetched.date, now=now),
        )  # fmt: skip


class PlaybackWatch:
    """One HLS output watched over time: a ``PlaybackJudge`` and the reads it asks for.

    The caller drives it: ``next_due()`` says when (on the prober's clock) to call ``step()``, which reads what
    is due (the master first when it is due, the renditions concurrently) and returns the judge's decisions.

    >>> follower = prober.follow(url, interval=2.0)
    >>> while True:
    ...     for decision in await follower.step(): print(decision.kind, decision.renditions)
    ...     await asyncio.sleep(max(0.0, follower.next_due() - prober.clock()))
    """

    def __init__(self, prober: Prober, url: str, *, interval: float, stall_after: float | None) -> None:
        self.prober = prober
        self.url = url
        self.judge = PlaybackJudge(interval=interval, stall_after=stall_after)
        self.urls: dict[str, str] = {}  # rendition name -> its playlist URL

    def next_due(self) -> float:
        return self.judge.next_due()

    async def step(self, now: float | None = None) -> list[PlaybackDecision]:
        """Read what is due at ``now`` (default: the prober's clock) and feed it to the judge."""
        judge = self.judge
        now = self.prober.clock() if now is None else now
        decisions: list[PlaybackDecision | None] = []
        due = judge.due(now + _BATCH)
        if MASTER in due:
            decisions += await self._read_master()
            due = judge.due(max(now, self.prober.clock()) + _BATCH)
        names = [name for name in due if name != MASTER and name in self.urls]
        reads = await asyncio.gather(*(self.prober.read_rendition(name, self.urls[name]) for name in names))
        decisions.append(judge.feed_all(reads))
        return [d for d in decisions if d is not None]

    async def _read_master(self) -> list[PlaybackDecision | None]:
        master = await self.prober.read_master(self.url)
        if master.error is not None:
            return [self.judge.master_read(master.at, error=master.error)]
        self.urls = {v.name: v.url for v in master.renditions}
        self.judge.master_read(master.at, names=self.urls)
        return [self.judge.feed(master.media)] if master.media is not None else []


def _report(variant: Variant, read: RenditionRead, stall_after: float | None) -> RenditionReport:
    state: RenditionState
    age = read.age if read.age is not None else read.program_age
    if read.error is not None:
        state = "failed"
    elif read.ended:
        state = "ended"
    else:
        threshold = stall_after if stall_after is not None else STALL_FACTOR * (read.target_duration or 0.0)
        state = "stalled" if age is not None and age >= threshold else "playing"
    return RenditionReport(
        name=variant.name, url=variant.url, state=state,
        bandwidth=variant.bandwidth, resolution=variant.resolution, media_sequence=read.media_sequence,
        target_duration=read.target_duration, segments=read.segments, age=age, error=read.error,
    )  # fmt: skip


def _overall(reports: list[RenditionReport]) -> PlaybackState:
    states = {r.state for r in reports}
    if "failed" in states:
        return "degraded"
    if states == {"ended"}:
        return "ended"
    if "stalled" in states:
        return "stalled"
    return "playing"


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)
