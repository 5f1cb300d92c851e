"""What playback health reads and reports: one read of a rendition, the judge's decisions, a probe's report. Pure."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

from ..transitions import PlaybackResumed, PlaybackStalled, Transition, playback_transition_id

__all__ = [
    "MASTER",
    "PlaybackDecision",
    "PlaybackReport",
    "PlaybackState",
    "RenditionRead",
    "RenditionReport",
    "RenditionState",
    "to_transition",
]

#: The name under which an unreadable master playlist is judged and reported, as if it were a rendition.
MASTER = "master"

PlaybackState = Literal["playing", "stalled", "ended", "degraded", "unreachable"]
RenditionState = Literal["playing", "stalled", "ended", "failed"]


class RenditionRead(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One read of a rendition's media playlist, as the judge takes it.

    ``at`` is a monotonic time in seconds (whatever clock the caller uses, the same for every read). ``error`` is
    None for a playlist read and parsed, else what failed (``"HTTP 404"``, ``"timeout"``, ``"too large"``,
    ``"not a playlist"``, ``"too many redirects"``, ``"unreachable"``), and then the other fields are empty.
    ``age`` is at least how long ago the playlist last changed by its ``Last-Modified`` (against the origin's
    ``Date``), None without one; the judge uses it on a rendition's first read, so that a playlist frozen before
    the first look counts. ``program_age`` is the time since its newest segment ended by
    ``EXT-X-PROGRAM-DATE-TIME`` (latency included, so it overstates: a one-look ``probe`` falls back on it).
    """

    name: str
    at: float
    media_sequence: int | None = None
    newest_segment: str | None = None
    segments: int = 0
    target_duration: float | None = None
    ended: bool = False
    age: float | None = None
    program_age: float | None = None
    error: str | None = None


class PlaybackDecision(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """What the judge decided on one read: the output ``"stalled"`` or ``"resumed"``.

    ``renditions`` are the names stalled at that moment (for ``"resumed"``: those that had stalled),
    ``reason`` says why (``"stale"``, ``"http 404"``, ...; ``"advancing"`` for a resume), ``at`` is the read's
    time on the caller's clock.
    """

    kind: Literal["stalled", "resumed"]
    renditions: tuple[str, ...]
    reason: str
    at: float

    @property
    def transition_kind(self) -> str:
        """``"playback_stalled"`` or ``"playback_resumed"``."""
        return f"playback_{self.kind}"


class RenditionReport(msgspec.Struct, frozen=True, kw_only=True):
    """One rendition of a probe's report. ``name`` is its folder or URI stem (``1080p``); ``age`` is seconds
    since its playlist last changed, by ``Last-Modified`` (at least that: HTTP dates are whole seconds) or else by
    its newest ``EXT-X-PROGRAM-DATE-TIME`` (None: the origin says neither); ``error`` is None or what failed.
    ``state``: ``"playing"``, ``"stalled"`` (``age`` at least the stall threshold), ``"ended"``, ``"failed"``."""

    name: str
    url: str
    state: RenditionState
    bandwidth: int | None = None
    resolution: str | None = None
    media_sequence: int | None = None
    target_duration: float | None = None
    segments: int = 0
    age: float | None = None
    error: str | None = None


class PlaybackReport(msgspec.Struct, frozen=True, kw_only=True):
    """One look at an HLS output: the master playlist, then every rendition's media playlist.

    ``state``: ``"playing"``; ``"stalled"`` (a rendition's last change is older than the stall threshold);
    ``"ended"`` (``EXT-X-ENDLIST`` everywhere); ``"degraded"`` (a rendition unreadable); ``"unreachable"`` (the
    master unreadable: ``error`` says how). Without ``Last-Modified`` or ``EXT-X-PROGRAM-DATE-TIME`` one look
    cannot see a freeze; watching (two looks or more) can.
    """

    url: str
    state: PlaybackState
    renditions: list[RenditionReport]
    error: str | None = None
    at: datetime | None = None

    @property
    def stalled(self) -> list[str]:
        """Names of the renditions judged stalled or failed."""
        return [r.name for r in self.renditions if r.state in ("stalled", "failed")]


def to_transition(
    decision: PlaybackDecision,
    *,
    session_id: str,
    at: datetime,
    count: int,
    channel_id: str | None = None,
    previous: str | None = None,
    cursor: str = "",
) -> Transition:
    """The ``PlaybackStalled`` or ``PlaybackResumed`` a watcher yields for a decision: ``count`` is which one of its
    kind this is for the session (1 for the first stall), which makes its ``id``."""
    kind = decision.transition_kind
    cls = PlaybackStalled if decision.kind == "stalled" else PlaybackResumed
    return cls(
        session_id=session_id, channel_id=channel_id, at=at, previous=previous, cursor=cursor,
        id=playback_transition_id(session_id, kind, count), renditions=decision.renditions, reason=decision.reason,
    )  # fmt: skip
