"""The pure state machine behind every watch: what one poll read about a session in, transitions out."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Final, Literal

from ..models import Event
from ..transitions import TRANSITION_TYPES, Transition, Unknown
from ._cursor import CURSOR_VERSION, MAX_CURSOR_KEYS, Cursor, decode_cursor, encode_cursor
from ._kinds import DEFAULT_TABLE, KindTable, normalise
from ._window import ReadWindow, event_key, read_order, written

__all__ = ["DEFAULT_HOLD", "LIFECYCLE_KINDS", "SessionTracker"]

#: Seconds a status step read before its event waits for that event (see ``SessionTracker``).
DEFAULT_HOLD: Final = 1.0


class SessionTracker:
    """Turns what a poller reads about one session into the transitions a watch yields.

    A session has two dimensions, reported side by side and never folded into one:

    - its **status**, the lifecycle ``initializing → started → live → stopped → ended``. Each step is yielded
      once, only forwards, whatever shows it first: the status read, the step's own event (``initialize``,
      ``start``, ``stop``, ``ended``, an on-air event), or ``startedAt``. Its ``id`` is the session and the state
      reached, so it is the same whichever source came first. Being on air implies the earlier steps: ``Live``
      brings ``Initializing`` and ``Started`` before it if they were not seen (their events may be listed a
      moment after the status), and any step brings ``Initializing``. A lifecycle event read after its step was
      reported is that step, not a new transition. ``Live`` comes once, before the first signal transition.
    - its **signal**, from events only: ``stable``, ``signal_interrupted`` → ``interrupted``,
      ``signal_restored`` → ``restored``. A signal event never changes the status stream, and a status never
      hides an event.

    One poll is one call, ``feed(status, events, at)``: the status read (``None`` if it was not read), the events
    a newest-first read found (any order; duplicates and events already yielded are dropped) and the time of the
    poll. No I/O, no clock. Every signal and unknown event is yielded exactly once, in the order it was written
    (``updatedAt``, then id); one listed late, out of order, or after the server's clock stepped back is yielded
    when it is first listed, if it lies within ``LATE_WINDOW`` of the newest event read (see ``ReadWindow``).
    An event whose ``updatedAt`` is bumped by an edit is not yielded again.

    Holds: a status that shows a stop, or the end, before its event is listed waits ``hold`` seconds (the
    pollers pass most of an interval) for that event, so that the step comes at the event's place among the
    signal events whatever the poll timing. ``release_at`` says when a poll can release it; ``Ended`` from the
    status alone comes from the first ``feed`` at least ``hold`` after the terminal status was read
    (``awaiting_final_events``: read the events once more then), carrying the server's ``ended`` event if it
    has come by then.

    Resuming: every transition's ``cursor`` (and ``tracker.cursor`` between polls) encodes the position right
    after it; ``SessionTracker(session_id, since=cursor)`` carries on from there.
    """

    __slots__ = (
        "_held", "_last_kind", "_live", "_page_sig", "_pending_end", "_rank", "_signal", "_status", "_unknown_statuses",
        "_window", "_yielded", "channel_id", "created_at", "hold", "session_id", "table",
    )  # fmt: skip

    def __init__(
        self,
        session_id: str,
        *,
        channel_id: str | None = None,
        since: str | None = None,
        table: KindTable = DEFAULT_TABLE,
        hold: float = DEFAULT_HOLD,
        created_at: datetime | None = None,
    ) -> None:
        if not hold >= 0:
            raise ValueError(f"hold must be >= 0 seconds, got {hold!r}")
        self.session_id = session_id
        self.channel_id = channel_id
        self.created_at = created_at
        self.table = table
        self.hold = timedelta(seconds=hold)
        self._window = ReadWindow()
        # Keys of every event taken in (yielded, or taken as its step): what keeps an edited event, whose
        # updatedAt moves it back to the top of the listing long after, from being yielded twice.
        # A dict, not a set: a set is always tracked by the cyclic GC, a dict of ints is not.
        self._yielded: dict[int, None] = {}
        self._rank = -1  # lifecycle position reached (see _POSITION)
        self._live = False  # Live yielded
        self._signal: str | None = None  # stable, interrupted or restored: the last signal transition
        self._status: str | None = None  # the last status read, normalised
        self._unknown_statuses = 0
        self._last_kind: str | None = None
        self._pending_end: datetime | None = None  # a terminal status read then, held for the final events read
        # Steps the status (or startedAt) showed before their event was read: step -> (when shown, its time).
        self._held: dict[str, tuple[datetime, datetime]] = {}
        # What the last poll read (ids and times), hashed: a poll that reads the same again has nothing new in it,
        # and skips hashing each id. Everything a poll reads is known after it (taken in, or behind the window).
        self._page_sig: int | None = None
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
    def live(self) -> bool:
        """True once ``Live`` was yielded: the session was seen on air."""
        return self._live

    @property
    def mark(self) -> datetime | None:
        """``updatedAt`` of the newest event read (None before any)."""
        return self._window.mark

    @property
    def ended(self) -> bool:
        """True once ``Ended`` was returned: every later ``feed`` returns ``[]``."""
        return self._last_kind == "ended"

    @property
    def awaiting_final_events(self) -> bool:
        """True after a terminal status: read the events once more, ``hold`` on; that ``feed`` ends the stream."""
        return self._pending_end is not None and not self.ended

    @property
    def release_at(self) -> datetime | None:
        """When a ``feed`` can release a held step (a stop or the end read from the status); None if none is held."""
        if not self._held and self._pending_end is None:
            return None  # asked after every poll: most polls hold nothing
        held = [seen for seen, _ in self._held.values()]
        if self._pending_end is not None:
            held.append(self._pending_end)
        return min(held) + self.hold if held and not self.ended else None

    @property
    def cursor(self) -> str:
        """The position right now; ``since=`` it resumes here."""
        return encode_cursor(self._snapshot())

    def knows(self, event: Event) -> bool:
        """True if this event was taken in before, or lies behind the window: a read has nothing new in it."""
        return event_key(event.id) in self._yielded or self._window.is_past(event)

    def ends_read(self, event: Event) -> bool:
        """True if a newest-first read can stop after a page that ends in this event: one taken in before and
        written before the newest read (events sharing that instant may be listed in any order), or one behind
        the window."""
        window = self._window
        if window.is_past(event):
            return True
        return window.mark is not None and written(event) < window.mark and event_key(event.id) in self._yielded

    def is_seen(self, event: Event) -> bool:
        """True if this event would not be yielded: taken in before, or behind the late window."""
        return self.knows(event)

    def note_outside(self, kind: str) -> tuple[str | None, str]:
        """A transition of this session made outside the tracker (playback health) is yielded now: returns its
        ``previous`` and its ``cursor``, and the next transition's ``previous`` is this one's kind."""
        previous, self._last_kind = self._last_kind, kind
        return previous, self.cursor

    # -- one poll -----------------------------------------------------------------------------------------------

    def feed(
        self,
        status: str | None,
        events: Iterable[Event],
        at: datetime,
        *,
        started_at: datetime | None = None,
        status_at: datetime | None = None,
    ) -> list[Transition]:
        """One poll: the status read (None if not read), the events read, when the reads began, and the session's
        ``startedAt`` if the poller saw it; the transitions to yield.

        ``at`` is when the reads began, ``status_at`` when the status was answered (default ``at``): a step the
        status shows before its event is held from ``status_at``, and only a read that began at least ``hold``
        after that releases it (so a slow answer, made after the status changed, cannot release it early).
        """
        return self.feed_fresh(status, events, at, started_at=started_at, status_at=status_at)[0]

    def feed_fresh(
        self,
        status: str | None,
        events: Iterable[Event],
        at: datetime,
        *,
        started_at: datetime | None = None,
        status_at: datetime | None = None,
    ) -> tuple[list[Transition], list[Event]]:
        """``feed``, and the events it took as new in written order (a poller's plan reads what they announce)."""
        if self.ended:
            return [], []
        events = events if isinstance(events, list) else list(events)
        # Ids and times, as two tuples rather than a pair per event: fewer objects made on every poll. The times
        # count: an event edited in place (same id, newer updatedAt) moves the window on.
        sig = hash((tuple([event.id for event in events]), tuple([written(event) for event in events])))
        if sig == self._page_sig:
            if status is None and started_at is None and not self._held and self._pending_end is None:
                return [], []  # the steady state: the same page again, nothing held, no status to weigh
            keys: list[tuple[Event, int]] = []
            fresh: list[Event] = []
        else:
            read: dict[str, Event] = {}
            for event in events:
                read.setdefault(event.id, event)
            # Each id's key once per poll: the stable hash is the main cost of a poll that reads something new.
            keys = [(event, event_key(event.id)) for event in read.values()]
            yielded, window = self._yielded, self._window
            fresh = sorted((e for e, key in keys if key not in yielded and not window.is_past(e)), key=read_order)
        shown: list[tuple[str, datetime]] = []  # steps this poll's status or startedAt show, held from now
        unknown_status: str | None = None
        terminal = False
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
                    terminal = True
                else:
                    shown.append(("live" if kind in _ON_AIR else kind, at))
        if started_at is not None:
            # The earliest evidence dates Live: startedAt, not the poll that happened to read a live status.
            shown = [s for s in shown if s[0] != "live"] + [(_SEEN_ON_AIR, started_at)]
        # Held steps take their place among this poll's events; those whose wait is over are placed even if
        # their event never came.
        steps = sorted(
            (_STEP_POSITION[step], step, when, at - seen < self.hold) for step, (seen, when) in self._held.items()
        )
        seen_at = status_at if status_at is not None else at
        ending = self._pending_end is not None and at - self._pending_end >= self.hold
        out: list[Transition] = []
        self._emit_poll(out, fresh, steps, unknown_status, at, ending)
        for event, key in keys:
            self._window.note_key(key, written(event))
        self._page_sig = sig
        # Set only now, so that the cursors of this poll's transitions replay the status on resume.
        if self._held:
            self._held = {step: entry for step, entry in self._held.items() if self._step_open(step)}
        if not self.ended:
            if terminal and self._pending_end is None:
                self._pending_end = seen_at
            for step, when in shown:
                if step not in self._held and self._step_open(step):
                    self._held[step] = (seen_at, when)
        return out, fresh

    # -- helpers --------------------------------------------------------------------------------------------

    def _emit_poll(
        self,
        out: list[Transition],
        fresh: list[Event],
        steps: list[tuple[int, str, datetime, bool]],
        unknown: str | None,
        at: datetime,
        ending: bool,
    ) -> None:
        """This poll's transitions: events in written order; each held step just before the first event that lies
        after it in the lifecycle (or, if its wait is over, after the events), and Live shown by startedAt before
        the first event written after it; an unknown status after the events; the end last of all."""
        final: Event | None = None
        for event in fresh:
            # startedAt is the server's own time: Live goes before the first event written after it.
            self._emit_seen_on_air(out, steps, before=written(event))
            kind = self.table.kind_for_action(event.action)
            if kind == "ended":
                if final is None:
                    final = event
                else:
                    self._take(event)  # a second "ended" event: the step comes once
                continue
            position = _POSITION.get(kind)
            if position is not None:
                self._emit_steps(out, steps, before=position, waiting_too=True)
            if kind in _SIGNALS:
                if not self._live:
                    self._reach(out, "live", event.created_at, None)  # on air: Live before the first signal
                out.append(self._emit(kind, "event", event.created_at, event, event.action))
            elif kind == "unknown":
                out.append(self._emit("unknown", "event", event.created_at, event, event.action))
            else:
                if self._is_open(kind, from_status=False):
                    self._reach(out, kind, event.created_at, event)
                self._take(event)
        last = _POSITION["ended"] if not (final is not None or ending) else _POSITION["ended"] + 1
        self._emit_steps(out, steps, before=last, waiting_too=final is not None or ending)
        if unknown is not None:
            self._unknown_statuses += 1
            self._status = normalise(unknown)
            out.append(self._emit("unknown", "status", at, None, unknown))
        if final is not None:
            self._take(final)
            self._reach(out, "ended", final.created_at, final)
        elif ending:
            assert self._pending_end is not None
            self._reach(out, "ended", self._pending_end, None)

    def _emit_steps(
        self, out: list[Transition], steps: list[tuple[int, str, datetime, bool]], *, before: int, waiting_too: bool
    ) -> None:
        """Place the steps before ``before`` in the lifecycle; one still waiting for its event only if
        ``waiting_too`` (a later step's event, or the end, shows it happened)."""
        for entry in list(steps):
            position, step, when, waiting = entry
            if position >= before:
                break
            if waiting and not waiting_too:
                continue
            steps.remove(entry)
            if step == _SEEN_ON_AIR:
                if not self._live:
                    self._reach(out, "live", when, None)
            elif self._is_open(step, from_status=True):
                self._reach(out, step, when, None)

    def _emit_seen_on_air(
        self, out: list[Transition], steps: list[tuple[int, str, datetime, bool]], *, before: datetime
    ) -> None:
        for entry in list(steps):
            if entry[1] == _SEEN_ON_AIR and entry[2] < before:
                steps.remove(entry)
                if not self._live:
                    self._reach(out, "live", entry[2], None)

    def _step_open(self, step: str) -> bool:
        if step == _SEEN_ON_AIR:
            return not self._live
        return self._is_open(step, from_status=True)

    def _is_open(self, kind: str, *, from_status: bool) -> bool:
        """Whether reaching this step now is news: each step once, and only forwards."""
        if kind == "live":
            # An on-air event shows Live even past a stop; a "live" status then is only a status lagging behind.
            return not self._live and (not from_status or self._rank < _STOPPED)
        return _POSITION[kind] > self._rank

    def _reach(self, out: list[Transition], kind: str, when: datetime, event: Event | None) -> None:
        """Yield a lifecycle step, with the steps being there implies: opened first, and started if on air."""
        if kind != "initializing" and self._rank < _POSITION["initializing"]:
            out.append(self._emit("initializing", "status", when, None, "initializing"))
        if kind == "live" and self._rank < _POSITION["started"]:
            out.append(self._emit("started", "status", when, None, "started"))
        out.append(self._emit(kind, "event" if event is not None else "status", when, event, kind))

    def _take(self, event: Event) -> None:
        self._yielded[event_key(event.id)] = None

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
            self._yielded[event_key(event.id)] = None
            self._window.note(event)
        if kind in LIFECYCLE_KINDS:
            ident = f"{self.session_id}/status/{kind}"
        elif event is not None:
            ident = f"{self.session_id}/event/{event.id}"
        else:
            ident = f"{self.session_id}/status/unknown/{self._unknown_statuses}"
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

    def _snapshot(self) -> Cursor:
        return Cursor(
            v=CURSOR_VERSION, s=self.session_id, c=self.channel_id, ca=self.created_at, m=self._window.mark,
            i=sorted(key for key, _ in self._window.newest_keys(MAX_CURSOR_KEYS)), r=self._rank, lv=self._live,
            g=self._signal, st=self._status, n=self._unknown_statuses, k=self._last_kind, e=self._pending_end,
            h={step: [seen, when] for step, (seen, when) in self._held.items()},
        )  # fmt: skip

    def _restore(self, c: Cursor) -> None:
        if c.m is not None:
            for key in c.i:
                self._window.note_key(key, c.m)
        self._yielded = dict.fromkeys(c.i)
        if self.channel_id is None:
            self.channel_id = c.c
        if self.created_at is None:
            self.created_at = c.ca
        self._rank, self._live, self._signal, self._status = c.r, c.lv, c.g, c.st
        self._unknown_statuses, self._last_kind, self._pending_end = c.n, c.k, c.e
        self._held = {step: (pair[0], pair[1]) for step, pair in c.h.items()}


#: The status dimension's kinds: each is yielded once per session, its id the session and the state reached.
LIFECYCLE_KINDS: Final = frozenset({"initializing", "started", "live", "stopped", "ended"})

# Where each kind stands in a session's lifecycle. Signal kinds stand just after live: they need Live first.
_POSITION: dict[str, int] = {
    "initializing": 0, "started": 2, "live": 4, "stable": 5, "interrupted": 5, "restored": 5, "stopped": 6,
    "ended": 8,
}  # fmt: skip
_LIVE: Final = _POSITION["live"]
_STOPPED: Final = _POSITION["stopped"]
_KIND_AT = {0: "initializing", 2: "started", 4: "live", 5: "live", 6: "stopped", 8: "ended"}
_SIGNALS: Final = frozenset({"stable", "interrupted", "restored"})
# Statuses and event kinds that show the session on air.
_ON_AIR: Final = _SIGNALS | {"live"}
# A Live step shown by startedAt: evidence of being on air even past a stop.
_SEEN_ON_AIR: Final = "live (seen on air)"
_STEP_POSITION: Final = {**_POSITION, _SEEN_ON_AIR: _POSITION["live"]}
