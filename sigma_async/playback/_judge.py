"""``PlaybackJudge``: is an HLS output advancing? Pure: successive reads in, stall and resume decisions out.

No I/O and no clock of its own: every read carries its time, and the judge says which playlist is due next.

>>> judge = PlaybackJudge(interval=2.0)
>>> judge.master_read(0.0, names=["1080p", "720p"])
>>> judge.due(0.0)
['1080p', '720p']
>>> judge.feed(RenditionRead(name="720p", at=0.0, media_sequence=7, newest_segment="s7.ts", target_duration=1))
"""

from __future__ import annotations

from collections.abc import Iterable

from ._models import MASTER, PlaybackDecision, RenditionRead

__all__ = ["DEFAULT_TARGET_DURATION", "STALL_FACTOR", "PlaybackJudge"]

#: A rendition is stalled when it has not advanced for this many target durations (unless ``stall_after``).
STALL_FACTOR = 3.0
#: The target duration assumed for a playlist never read yet (none of the session's has been read either).
DEFAULT_TARGET_DURATION = 6.0
#: Answers after which the master is read again: the rendition's playlist may have moved.
_MOVED = ("HTTP 404", "HTTP 410")


class _Rendition:
    """What the judge knows of one playlist."""

    __slots__ = ("ended", "error", "newest", "read_at", "seen", "sequence", "since", "target")

    def __init__(self, at: float) -> None:
        self.since = at  # when it last advanced; until its first read, when it was first tracked
        self.read_at: float | None = None
        self.seen = False  # read successfully at least once
        self.sequence: int | None = None
        self.newest: str | None = None
        self.target: float | None = None
        self.ended = False
        self.error: str | None = None


class PlaybackJudge:
    """Judges the renditions of one HLS output from successive reads.

    A rendition is stalled when its playlist, at its latest read, had not advanced (media sequence and newest
    segment) for the threshold: ``stall_after`` seconds, or by default ``STALL_FACTOR`` times its
    ``EXT-X-TARGETDURATION``; a rendition that fails to read is stalled when it has failed (and so not
    advanced) for as long. A media sequence
    that goes back (a packager restart) is an advance. A playlist with ``EXT-X-ENDLIST`` is over, never stalled.

    ``feed`` returns at most one decision per read, and decisions alternate, starting with ``"stalled"``:
    a stall names the renditions stalled at that moment; the resume comes when none is stalled any more (and
    the output is not over), naming every rendition that stalled meanwhile.

    Each rendition is read about once per ``max(interval, its target duration)`` (``due``, ``next_due``); the
    master once at first, again after a rendition answers 404 or 410 (at most once per ``interval``), and every
    ``interval`` while it cannot be read (it is then judged as a rendition named ``MASTER``).
    """

    def __init__(self, *, stall_after: float | None = None, interval: float = 2.0) -> None:
        if stall_after is not None and not stall_after > 0:
            raise ValueError(f"stall_after must be a positive number of seconds, got {stall_after!r}")
        if not interval > 0:
            raise ValueError(f"interval must be a positive number of seconds, got {interval!r}")
        self.stall_after = stall_after
        self.interval = interval
        self._renditions: dict[str, _Rendition] = {}
        self._open = False  # a stall was decided and no resume since
        self._episode: dict[str, None] = {}  # renditions stalled since the stall was decided, in order
        self._master_at: float | None = None  # the last read of the master, successful or not
        self._master_wanted = True

    # -- what the judge has seen ----------------------------------------------------------------------------

    @property
    def stalled(self) -> bool:
        """True between a ``"stalled"`` decision and the next ``"resumed"``."""
        return self._open

    @property
    def renditions(self) -> list[str]:
        """The renditions judged, in the master's order (``MASTER`` while the master cannot be read)."""
        return list(self._renditions)

    def threshold(self, name: str) -> float:
        """Seconds without an advance after which ``name`` is stalled."""
        if self.stall_after is not None:
            return self.stall_after
        rendition = self._renditions.get(name)
        target = rendition.target if rendition is not None else None
        if target is None:
            known = [r.target for r in self._renditions.values() if r.target is not None]
            target = max(known) if known else DEFAULT_TARGET_DURATION
        return STALL_FACTOR * target

    def stalled_now(self) -> dict[str, str]:
        """The renditions stalled by their latest reads, each with its reason (``"stale"``, or its error in lower
        case). A rendition is judged only on what its own reads showed: a read that is late is not a stall."""
        found: dict[str, str] = {}
        for name, r in self._renditions.items():
            if r.read_at is None or r.ended or r.read_at - r.since < self.threshold(name):
                continue  # not read yet; over (an error after EXT-X-ENDLIST is the origin tidying up); or not long
            found[name] = r.error.lower() if r.error is not None else "stale"
        return found

    # -- reads in, decisions out ----------------------------------------------------------------------------

    def master_read(
        self, at: float, *, names: Iterable[str] | None = None, error: str | None = None
    ) -> PlaybackDecision | None:
        """The master was read at ``at``: its renditions' ``names`` in order, or the ``error`` that stopped it.

        Renditions it no longer lists are forgotten; new ones are due at once, and are not stalled before the
        threshold has passed from now. An error is judged as a read of the rendition ``MASTER``.
        """
        self._master_at = at
        if error is not None:
            return self.feed(RenditionRead(name=MASTER, at=at, error=error))
        if names is None:
            raise ValueError("give the master's rendition names, or the error that stopped reading it")
        self._master_wanted = False
        listed = dict.fromkeys(names)
        listed.pop(MASTER, None)
        self._renditions = {name: self._renditions.get(name) or _Rendition(at) for name in listed}
        return None

    def feed(self, read: RenditionRead) -> PlaybackDecision | None:
        """Take one read; return the decision it brings, if any."""
        r = self._renditions.get(read.name)
        if r is None:
            r = self._renditions[read.name] = _Rendition(read.at)
        self._note(r, read)
        return self._decide(read.at)

    def feed_all(self, reads: Iterable[RenditionRead]) -> PlaybackDecision | None:
        """Take reads made together (one round of the renditions due) and decide once, at the last one: a stall
        then names every rendition that round found stalled."""
        last = None
        for read in sorted(reads, key=lambda r: r.at):
            r = self._renditions.get(read.name)
            if r is None:
                r = self._renditions[read.name] = _Rendition(read.at)
            self._note(r, read)
            last = read.at
        return self._decide(last) if last is not None else None

    def _note(self, r: _Rendition, read: RenditionRead) -> None:
        r.read_at = read.at
        r.error = read.error
        if read.error is not None:
            if read.error in _MOVED:
                self._master_wanted = True
            return
        if read.target_duration is not None and read.target_duration > 0:
            r.target = float(read.target_duration)
        if not r.seen:
            r.seen = True
            if read.age is not None:
                # The origin says when the playlist last changed: a freeze older than our first look counts.
                r.since = read.at - max(0.0, read.age)
        elif read.media_sequence != r.sequence or read.newest_segment != r.newest or (r.ended and not read.ended):
            r.since = read.at  # any change is an advance, a sequence that went back (a restart) included
        r.sequence, r.newest, r.ended = read.media_sequence, read.newest_segment, read.ended

    def _decide(self, now: float) -> PlaybackDecision | None:
        stalled = self.stalled_now()
        if not self._open:
            if not stalled:
                return None
            self._open = True
            self._episode = dict.fromkeys(stalled)
            return PlaybackDecision(
                kind="stalled", renditions=tuple(stalled), reason=", ".join(dict.fromkeys(stalled.values())), at=now
            )
        self._episode.update(dict.fromkeys(stalled))
        live = any(not r.ended for r in self._renditions.values())
        if stalled or not live:
            return None  # still stalled; or the output is over, which is not a recovery
        self._open = False
        episode, self._episode = tuple(self._episode), {}
        return PlaybackDecision(kind="resumed", renditions=episode, reason="advancing", at=now)

    # -- what to read when ----------------------------------------------------------------------------------

    def next_read_at(self, name: str) -> float:
        """When ``name`` is next due: about ``max(interval, target duration)`` after its last read."""
        if name == MASTER and MASTER not in self._renditions:
            return self._master_next()
        r = self._renditions[name]
        if r.read_at is None:
            return r.since
        return r.read_at + max(self.interval, r.target or 0.0)

    def due(self, now: float) -> list[str]:
        """What to read at ``now``: ``MASTER`` first when the master is due, then the renditions due."""
        names = [MASTER] if self._master_next() <= now and MASTER not in self._renditions else []
        names += [name for name in self._renditions if self.next_read_at(name) <= now]
        return names

    def next_due(self) -> float:
        """The earliest time anything is due (``-inf`` before the master's first read: at once)."""
        times = [self.next_read_at(name) for name in self._renditions]
        times.append(self._master_next())
        return min(times)

    def _master_next(self) -> float:
        if self._master_at is None:
            return float("-inf")
        if MASTER in self._renditions:
            return self.next_read_at(MASTER)
        return self._master_at + self.interval if self._master_wanted else float("inf")
