"""The pure state machine behind every watch: what one poll read about a session in, transitions out."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from datetime import datetime
from typing import Literal

import msgspec

from ..models import Event
from ..transitions import TRANSITION_TYPES, Transition, Unknown
from ._kinds import DEFAULT_TABLE, KINDS, KindTable, normalise

__all__ = ["ReadMark", "SessionTracker", "read_order"]


class SessionTracker:
    """Turns what a poller reads about one session into the transitions a watch yields.

    A session has two dimensions, reported side by side and never folded into one:

    - its **status**, the lifecycle ``initializing → started → live → stopped → ended``, read from the status
      field and from lifecycle events (``initialize``, ``start``, ``stop``, ``ended``). Each step is yielded
      at most once and only forwards. ``Live`` is yielded once, when the session is first seen on air (its
      status, any signal event, or ``startedAt``), always before the first signal transition.
    - its **signal**, from events only: ``stable``, ``signal_interrupted`` → ``interrupted``,
      ``signal_restored`` → ``restored``. A signal event never changes the status stream, and a status never
      hides an event.

    One poll is one call, ``feed(status, events, at)``: the status read (``None`` if it was not read), every
    event the listing holds with ``updatedAt`` at or after ``mark`` (any order; duplicates and events already
    yielded are dropped) and the time of the poll. No I/O, no clock. Every event is yielded exactly once, in
    the order it was written (``updatedAt``, then id): one written late with an old ``createdAt`` comes when
    first seen; one whose ``updatedAt`` is bumped by an edit is not yielded again, and after one read it is
    below ``mark`` so pollers stop reading it.

    Terminal status: a status of ``ended`` with no ``ended`` event yet sets ``awaiting_final_events``. Read the
    events once more about one interval later and feed them (status ``None``): that call ends the stream, with
    the server's ``ended`` event if it has come, else with an ``Ended`` from the status.

    Resuming: every transition's ``cursor`` (and ``tracker.cursor`` between polls) encodes the position right
    after it; ``SessionTracker(session_id, since=cursor)`` carries on from there. A cursor keeps the ids of at
    most ``MAX_CURSOR_IDS`` events sharing the newest timestamp: past that (a burst no real server writes in
    one millisecond) resuming may repeat some of them, with the same ``Transition.id``, never skip one.
    """

    def __init__(
        self,
        session_id: str,
        *,
        channel_id: str | None = None,
        since: str | None = None,
        table: KindTable = DEFAULT_TABLE,
    ) -> None:
        self.session_id = session_id
        self.channel_id = channel_id
        self.table = table
        self._read = ReadMark()
        # Every event yielded here (hashes of ids: small, and only compared in this process). It is what keeps an
        # edited event, whose updatedAt moves past the mark, from being yielded twice.
        self._yielded: set[int] = set()
        self._rank = -1  # lifecycle position reached (see _POSITION)
        self._live = False  # Live yielded
        self._signal: str | None = None  # stable, interrupted or restored: the last signal transition
        self._status: str | None = None  # the last status read, normalised
        self._unknown_statuses = 0
        self._last_kind: str | None = None
        self._pending_end_at: datetime | None = None
        if since is not None:
            self._restore(decode_cursor(since, session_id))

    # -- what a poller needs to know --------------------------------------------------------------------------

    @property
    def status(self) -> str | None:
        """The lifecycle step reached: initializing, started, live, stopped or ended (None before any)."""
        return _KIND_AT.get(self._rank)

    @property
    def signal(self) -> str | None:
        """The last signal transition: stable, interrupted or restored (None before any)."""
        return self._signal

    @property
    def mark(self) -> datetime | None:
        """``updatedAt`` of the newest event read. A newest-first read can stop at the first event before it."""
        return self._read.at

    @property
    def ended(self) -> bool:
        """True once ``Ended`` was returned: every later ``feed`` returns ``[]``."""
        return self._last_kind == "ended"

    @property
    def awaiting_final_events(self) -> bool:
        """True after a terminal status: read the events once more and feed them; that ``feed`` ends the stream."""
        return self._pending_end_at is not None and not self.ended

    @property
    def cursor(self) -> str:
        """The position right now; ``since=`` it resumes here."""
        return encode_cursor(self._snapshot())

    def is_read_before(self, event: Event) -> bool:
        """True if a newest-first read can stop at this event: it was written before the newest one read.

        Events of that very instant are not "before": one may have been written after the last read.
        """
        return self._read.is_before(event)

    def is_seen(self, event: Event) -> bool:
        """True if this event was yielded already or read before."""
        return hash(event.id) in self._yielded or self._read.has_read(event)

    # -- one poll -----------------------------------------------------------------------------------------------

    def feed(
        self, status: str | None, events: Iterable[Event], at: datetime, *, started_at: datetime | None = None
    ) -> list[Transition]:
        """One poll: the status read (None if not read), the events read, when, and the session's ``startedAt``
        if the poller saw it; the transitions to yield."""
        if self.ended:
            return []
        read: dict[str, Event] = {}
        for event in events:
            read.setdefault(event.id, event)
        fresh = sorted((e for e in read.values() if not self.is_seen(e)), key=read_order)
        out: list[Transition] = []
        if self._pending_end_at is not None:  # the final read after a terminal status
            self._emit_poll(out, fresh, [], None, at)
            if not self.ended:
                out.append(self._emit_status("ended", self._pending_end_at))
            self._read.note_all(read.values())
            return out
        steps: list[tuple[int, str, datetime]] = []  # lifecycle steps the status or the evidence show
        unknown_status: str | None = None
        hold_end = False
        if status is not None:
            normalised = normalise(status)
            kind = self.table.kind_for_status(status)
            if kind == "unknown":
                # Recorded as it is yielded, so that the cursors of this poll's events replay it on resume.
                if normalised != self._status:
                    unknown_status = status
            else:
                self._status = normalised
                if kind == "ended":
                    hold_end = not any(self.table.kind_for_action(e.action) == "ended" for e in fresh)
                elif kind in _ON_AIR:
                    steps.append((_LIVE_POSITION, "live", at))
                else:
                    steps.append((_POSITION[kind], kind, at))
        if not self._live:
            on_air = next((e for e in fresh if self.table.kind_for_action(e.action) in _ON_AIR), None)
            if started_at is not None or on_air is not None:
                # The earliest evidence dates it: the same history gives the same Live whatever the poll timing.
                when = started_at or (on_air.created_at if on_air is not None else at)
                # An on-air event needs Live before it even past a stopped status: hence its own kind of step.
                steps = [s for s in steps if s[1] != "live"] + [(_LIVE_POSITION, _SEEN_ON_AIR, when)]
        self._emit_poll(out, fresh, sorted(steps), unknown_status, at)
        # The read was complete down to the old mark, so everything read counts as read, yielded or not: an
        # edited event is read once, not on every poll.
        self._read.note_all(read.values())
        if hold_end and not self.ended:
            # Set only now, so that the cursors of this poll's transitions replay the terminal status on resume.
            self._pending_end_at = at
        return out

    # -- helpers --------------------------------------------------------------------------------------------

    def _emit_poll(
        self,
        out: list[Transition],
        fresh: list[Event],
        steps: list[tuple[int, str, datetime]],
        unknown: str | None,
        at: datetime,
    ) -> None:
        """This poll's transitions: events in written order, each status step just before the first event that
        lies after it in the lifecycle, an unknown status after them, and an ``ended`` event last of all."""
        final: Event | None = None
        for event in fresh:
            kind = self.table.kind_for_action(event.action)
            if kind == "ended":
                if final is None:
                    final = event
                    continue
                kind = "unknown"  # Ended is yielded once; a second "ended" event still reaches the user
            position = _POSITION.get(kind)
            if position is not None:
                self._emit_steps(out, steps, before=position)
            out.append(self._emit_event(kind, event))
        self._emit_steps(out, steps, before=_POSITION["ended"])
        if unknown is not None:
            self._unknown_statuses += 1
            self._status = normalise(unknown)
            out.append(self._emit("unknown", "status", at, None, unknown))
        if final is not None:
            self._remember(final)
            out.append(self._emit("ended", "event", final.created_at, final, final.action))

    def _emit_steps(self, out: list[Transition], steps: list[tuple[int, str, datetime]], *, before: int) -> None:
        while steps and steps[0][0] < before:
            position, kind, when = steps.pop(0)
            if kind == _SEEN_ON_AIR or (kind == "live" and self._rank < _POSITION["stopped"]):
                if not self._live:
                    out.append(self._emit_status("live", when))
            elif position > self._rank:
                out.append(self._emit_status(kind, when))

    def _emit_status(self, kind: str, at: datetime) -> Transition:
        return self._emit(kind, "status", at, None, kind)

    def _emit_event(self, kind: str, event: Event) -> Transition:
        self._remember(event)
        if kind == "live" and self._live:
            kind = "unknown"  # Live is yielded once; a second "on air" event still reaches the user, as itself
        return self._emit(kind, "event", event.created_at, event, event.action)

    def _remember(self, event: Event) -> None:
        self._yielded.add(hash(event.id))
        self._read.note(event)

    def _emit(
        self, kind: str, source: Literal["status", "event"], at: datetime, event: Event | None, raw: str
    ) -> Transition:
        previous, self._last_kind = self._last_kind, kind
        self._rank = max(self._rank, _POSITION.get(kind, -1))
        if kind == "live":
            self._live = True
        elif kind in _SIGNALS:
            self._signal = kind
        if event is not None:
            ident = f"{self.session_id}/event/{event.id}"
        elif kind == "unknown":
            ident = f"{self.session_id}/status/unknown/{self._unknown_statuses}"
        else:
            ident = f"{self.session_id}/status/{kind}"
        cursor = self.cursor
        if kind == "unknown":
            return Unknown(
                session_id=self.session_id, channel_id=self.channel_id, source=source, event=event, at=at,
                previous=previous, cursor=cursor, id=ident, raw=raw,
            )  # fmt: skip
        return TRANSITION_TYPES[kind](
            session_id=self.session_id, channel_id=self.channel_id, source=source, event=event, at=at,
            previous=previous, cursor=cursor, id=ident,
        )  # fmt: skip

    def _snapshot(self) -> _Cursor:
        ids = sorted(self._read.ids)
        return _Cursor(
            v=_CURSOR_VERSION, s=self.session_id, m=self._read.at, i=ids[-MAX_CURSOR_IDS:], r=self._rank,
            lv=self._live, g=self._signal, st=self._status, n=self._unknown_statuses, k=self._last_kind,
            e=self._pending_end_at,
        )  # fmt: skip

    def _restore(self, c: _Cursor) -> None:
        self._read.at, self._read.ids, self._rank, self._live = c.m, set(c.i), c.r, c.lv
        self._signal, self._status, self._unknown_statuses = c.g, c.st, c.n
        self._last_kind, self._pending_end_at = c.k, c.e


class ReadMark:
    """How far back a newest-first read has gone: ``updatedAt`` of the newest event read, and the ids read at it.

    Events of exactly that instant are not taken as read unless their id was: one may be written after a read in
    the same millisecond.
    """

    __slots__ = ("at", "ids")

    def __init__(self) -> None:
        self.at: datetime | None = None
        self.ids: set[str] = set()

    def is_before(self, event: Event) -> bool:
        """True if the event was written before the mark: a newest-first read can stop there."""
        return self.at is not None and read_order(event)[0] < self.at

    def has_read(self, event: Event) -> bool:
        written = read_order(event)[0]
        return self.at is not None and (written < self.at or (written == self.at and event.id in self.ids))

    def note(self, event: Event) -> None:
        written = read_order(event)[0]
        if self.at is None or written > self.at:
            self.at, self.ids = written, {event.id}
        elif written == self.at:
            self.ids.add(event.id)

    def note_all(self, events: Iterable[Event]) -> None:
        for event in events:
            self.note(event)


def read_order(event: Event) -> tuple[datetime, str]:
    """Where an event stands in the order it was written: ``updatedAt`` (``createdAt`` if absent), then id."""
    return (event.updated_at or event.created_at, event.id)


# Where each kind stands in a session's lifecycle. Signal kinds stand just after live: they need Live first.
_POSITION: dict[str, int] = {
    "initializing": 0, "started": 2, "live": 4, "stable": 5, "interrupted": 5, "restored": 5, "stopped": 6,
    "ended": 8,
}  # fmt: skip
_LIVE_POSITION = _POSITION["live"]
_KIND_AT = {0: "initializing", 2: "started", 4: "live", 5: "live", 6: "stopped", 8: "ended"}
_SIGNALS = frozenset({"stable", "interrupted", "restored"})
# Statuses and event kinds that show the session on air.
_ON_AIR = _SIGNALS | {"live"}
# A Live step shown by an event or startedAt rather than by the status.
_SEEN_ON_AIR = "live (seen on air)"

#: Ids sharing the newest timestamp that a cursor keeps (see ``SessionTracker``).
MAX_CURSOR_IDS = 128
_CURSOR_VERSION = 2


class _Cursor(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    """What a cursor encodes; short keys keep it short."""

    v: int
    s: str  # session id
    m: datetime | None = None  # mark: updatedAt of the newest event read
    i: list[str] = msgspec.field(default_factory=list)  # ids read at exactly m
    r: int = -1  # lifecycle position reached
    lv: bool = False  # Live yielded
    g: str | None = None  # last signal kind
    st: str | None = None  # last status read, normalised
    n: int = 0  # unknown statuses yielded
    k: str | None = None  # kind of the last transition
    e: datetime | None = None  # terminal status read at this time, final events read pending


_cursor_decoder = msgspec.json.Decoder(_Cursor)


def encode_cursor(c: _Cursor) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(c)).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str, session_id: str) -> _Cursor:
    """The cursor's content; ``ValueError`` naming the problem if it is not one of this session's cursors."""
    if not isinstance(cursor, str):
        raise ValueError(f"a watch cursor is a str (a Transition.cursor), not {type(cursor).__name__}")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        c = _cursor_decoder.decode(raw)
    except (binascii.Error, ValueError, msgspec.DecodeError, RecursionError) as exc:
        raise ValueError(f"not a watch cursor (pass a Transition.cursor unchanged): {cursor[:40]!r}") from exc
    if c.v != _CURSOR_VERSION:
        raise ValueError(f"watch cursor of version {c.v}, this sigma-async reads version {_CURSOR_VERSION}")
    if c.s != session_id:
        raise ValueError(f"watch cursor belongs to session {c.s!r}, not {session_id!r}")
    if (c.k is not None and c.k not in KINDS) or (c.g is not None and c.g not in _SIGNALS):
        raise ValueError(f"watch cursor names an unknown kind: {c.k!r}, {c.g!r}")
    if c.r not in (-1, *_POSITION.values()) or c.n < 0:
        raise ValueError("watch cursor holds an impossible position")
    if c.m is None and c.i:
        raise ValueError("watch cursor has event ids but no mark")
    if c.m is not None and c.m.tzinfo is None:
        raise ValueError("watch cursor has a timestamp without a zone")
    return c
