"""Reading HLS playlists (with the ``m3u8`` library) into what playback health needs. Pure: bytes in, data out."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from pathlib import PurePosixPath
from urllib.parse import unquote, urlsplit

import m3u8
import msgspec

__all__ = [
    "MediaPlaylist",
    "NotAPlaylist",
    "Variant",
    "modified_age",
    "parse_playlist",
    "program_age",
    "rendition_names",
]

#: File stems that say nothing of the rendition (``1080p/index.m3u8``): the folder names it instead.
GENERIC_STEMS = frozenset({"index", "playlist", "chunklist", "prog_index", "media", "mono", "main", "stream", "live"})


#: The longest EXT-X-TARGETDURATION believed (seconds); live playlists use a few seconds.
MAX_TARGET_DURATION = 600.0


class NotAPlaylist(ValueError):
    """The body is not an HLS playlist (or not one that can be judged): garbage, HTML, a truncated file..."""


class Variant(msgspec.Struct, frozen=True, kw_only=True):
    """A rendition a master playlist lists: its name, absolute URL, and what the master says of it."""

    name: str
    url: str
    bandwidth: int | None = None
    resolution: str | None = None


class MediaPlaylist(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """What playback health reads from a media playlist. ``newest_end`` is when its newest segment ends by its
    ``EXT-X-PROGRAM-DATE-TIME`` (None without one)."""

    media_sequence: int
    newest_segment: str | None
    segments: int
    target_duration: float
    ended: bool
    newest_end: datetime | None = None


def parse_playlist(body: bytes, url: str) -> list[Variant] | MediaPlaylist:
    """A master playlist's renditions, or a media playlist's state; ``NotAPlaylist`` for anything else.

    ``url`` is where the body was read from (after redirects): relative URIs resolve against it.
    """
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise NotAPlaylist("not UTF-8 text") from None
    if not text.lstrip().startswith("#EXTM3U"):
        raise NotAPlaylist("does not start with #EXTM3U")
    try:
        playlist = m3u8.loads(text, uri=url)
    except Exception as exc:  # the library raises whatever its tag parsers meet (ValueError, IndexError, ...)
        raise NotAPlaylist(f"unreadable: {type(exc).__name__}") from None
    if playlist.is_variant:
        return _variants(playlist)
    return _media(playlist)


def _variants(playlist: m3u8.M3U8) -> list[Variant]:
    found: dict[str, tuple[int | None, str | None]] = {}
    for stream in playlist.playlists:
        info = stream.stream_info
        resolution = f"{info.resolution[0]}x{info.resolution[1]}" if info.resolution else None
        found.setdefault(stream.absolute_uri, (info.bandwidth, resolution))
    for media in playlist.media:
        if media.uri:  # alternative audio or subtitles with their own playlist: they can freeze too
            found.setdefault(media.absolute_uri, (None, None))
    if not found:
        raise NotAPlaylist("a master playlist that lists no rendition")
    urls = list(found)
    return [
        Variant(name=name, url=url, bandwidth=found[url][0], resolution=found[url][1])
        for name, url in zip(rendition_names(urls), urls, strict=True)
    ]


def _media(playlist: m3u8.M3U8) -> MediaPlaylist:
    if playlist.target_duration is None:
        raise NotAPlaylist("a media playlist without EXT-X-TARGETDURATION")
    target = float(playlist.target_duration)
    # The schedule and the stall threshold follow it: a zero, negative, endless or absurd one is not believed.
    if not 0 < target <= MAX_TARGET_DURATION:
        raise NotAPlaylist(f"EXT-X-TARGETDURATION {playlist.target_duration!r} is not a duration")
    segments = playlist.segments
    newest = segments[-1] if segments else None
    newest_end = None
    if newest is not None and newest.current_program_date_time is not None:
        stamp: datetime = newest.current_program_date_time
        stamp = stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=timezone.utc)
        newest_end = stamp + timedelta(seconds=newest.duration or 0)
    return MediaPlaylist(
        media_sequence=int(playlist.media_sequence or 0),
        newest_segment=newest.uri if newest is not None else None,
        segments=len(segments),
        target_duration=target,
        ended=bool(playlist.is_endlist),
        newest_end=newest_end,
    )


def rendition_names(urls: Sequence[str]) -> list[str]:
    """Short, distinct names for playlists: the file's stem (``stream_720p``), or its folder when the stem says
    nothing (``1080p/index.m3u8`` -> ``1080p``) or is shared; the whole path when even that is not distinct."""
    paths = [PurePosixPath(unquote(urlsplit(u).path)) for u in urls]
    names = [_short_name(p) for p in paths]
    if len(set(names)) < len(names):
        names = [p.parent.name or p.stem for p in paths]
    if len(set(names)) < len(names):
        names = [str(p.with_suffix("")).lstrip("/") or "/" for p in paths]
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if seen[name] == 1 else f"{name}~{seen[name]}")
    return unique


def _short_name(path: PurePosixPath) -> str:
    if path.stem.lower() in GENERIC_STEMS and path.parent.name:
        return path.parent.name
    return path.stem or path.parent.name or "/"


def modified_age(*, last_modified: str | None, date: str | None, now: datetime) -> float | None:
    """At least how many seconds ago the playlist last changed, by its ``Last-Modified``; None without one.

    Measured against the origin's own ``Date`` (so that our clock's skew does not count), or ``now`` without one.
    HTTP dates are whole seconds, so one second is taken off: the result is never more than the true age, and a
    stall judged from it is never early.
    """
    changed = _http_date(last_modified)
    if changed is None:
        return None
    reference = _http_date(date) or now
    return max(0.0, (reference - changed).total_seconds() - 1.0)


def program_age(*, newest_end: datetime | None, date: str | None, now: datetime) -> float | None:
    """Seconds since the newest segment's end by ``EXT-X-PROGRAM-DATE-TIME``; None without one. This includes the
    pipeline's latency (a segment is listed after it ends), so it overstates how long ago the playlist changed."""
    if newest_end is None:
        return None
    reference = _http_date(date) or now
    return max(0.0, (reference - newest_end).total_seconds())


def _http_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)
