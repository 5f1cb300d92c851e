"""The pure state machine behind ``watch_session``: polled statuses and events in, transitions out."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Literal

import msgspec

from .models import Event
from .transitions import TRANSITION_TYPES, Transition, Unknown

__all__ = ["DEFAULT_TABLE", "KIND_BY_ACTION", "KIND_BY_STATUS", "KINDS", "KindTable", "SessionTracker"]

#: Every transition kind, ``unknown`` included.
KINDS: frozenset[str] = frozenset(TRANSITION_TYPES) | {"unknown"}

#: Normalised session status -> transition kind.
KIND_BY_STATUS: Mapping[str, str] = MappingProxyType({
    "initializing": "initializing", "initialize": "initializing",
    "started": "started", "start": "started", "starting": "started",
    "live": "live",
    "stable": "stable",
    "interrupted": "interrupted", "signal_interrupted": "interrupted",
    "restored": "restored",
    "stopped": "stopped", "stop": "stopped", "stopping": "stopped",
    "ended": "ended", "end": "ended", "finished": "ended",
})  # fmt: skip

#: Normalised event action -> transition kind.
KIND_BY_ACTION: Mapping[str, str] = MappingProxyType({
    "initialize": "initializing", "initializing": "initializing",
    "start": "started", "started": "started",
    "live": "live", "on_publish": "live",
    "stable": "stable",
    "signal_interrupted": "interrupted", "interrupted": "interrupted", "signal_lost": "interrupted",
    "signal_restored": "restored", "restored": "restored",
    "stop": "stopped", "stopped": "stopped",
    "ended": "ended", "end": "ended",
})  # fmt: skip


def _normalise(raw: str) -> str:
    return raw.strip().lower().replace(" ", "_").replace("-", "_")


def _checked(table: Mapping[str, str]) -> dict[str, str]:
    bad = {key: kind for key, kind in table.items() if kind not in KINDS}
    if bad:
        raise ValueError(f"not transition kinds: {bad!r}; kinds are {sorted(KINDS)}")
    return {_normalise(key): kind for key, kind in table.items()}


class KindTable:
    """Which transition kind a status or an event action means; anything it does not map is ``unknown``.

    Keys are normalised (case, spaces and hyphens do not matter). Extend it for values the vendor adds:

    >>> table = DEFAULT_TABLE.extended(actions={"transcoder_restarted": "restored"})
    >>> table.kind_for_action("Transcoder-Restarted")
    'restored'
    """

    def __init__(self, statuses: Mapping[str, str], actions: Mapping[str, str]) -> None:
        self._statuses = _checked(statuses)
        self._actions = _checked(actions)

    @property
    def statuses(self) -> Mapping[str, str]:
        return MappingProxyType(self._statuses)

    @property
    def actions(self) -> Mapping[str, str]:
        return MappingProxyType(self._actions)

    def kind_for_status(self, raw: str) -> str:
        return self._statuses.get(_normalise(raw), "unknown")

    def kind_for_action(self, raw: str) -> str:
        return self._actions.get(_normalise(raw), "unknown")

    def extended(
        self, *, statuses: Mapping[str, str] | None = None, actions: Mapping[str, str] | None = None
    ) -> KindTable:
        """A new table with these entries added (or overriding this table's)."""
        return KindTable({**self._statuses, **_checked(statuses or {})}, {**self._actions, **_checked(actions or {})})

    def __repr__(self) -> str:
        return f"KindTable(statuses={self._statuses!r}, actions={self._actions!r})"


DEFAULT_TABLE = KindTable(KIND_BY_STATUS, KIND_BY_ACTION)


class SessionTracker:
    """Turns what a poller reads about one session into the transitions ``watch_session`` yields.

    One poll is one call, ``feed(status, events, at)``: the status read (None if that read failed), the events
    read (any order; duplicates and already-yielded events are dropped) and the time of the poll. No I/O, no
    clock. Each event is yielded once, in ``(created_at, id)`` order; a status change that no event explains is
    yielded as a ``source="status"`` transition, before that poll's events. ``Ended`` is yielded once, last.

    The poller's loop::

        tracker = SessionTracker(session_id, channel_id=channel_id, since=since)
        while not tracker.ended:
            final = tracker.awaiting_final_events
            status = None if final else await read_status()        # None when the read failed
            events = []
            async for event in events_newest_first(session_id):    # page by page
                if tracker.is_older(event):
                    break                                          # everything from here on was read before
                events.append(event)
            for transition in tracker.feed(status, events, now()):
                yield transition
            if not tracker.awaiting_final_events:
                await sleep(interval)

    Terminal status: when the status says ``ended`` and no ``ended`` event came in that poll, ``feed`` returns
    the transitions before ``Ended`` and sets ``awaiting_final_events``. Read the events once more, at once, and
    feed them (the status is then ignored; pass ``[]`` if the read failed). That call always ends the stream:
    with the server's ``ended`` event if it has arrived, else with an ``Ended`` from the status whose ``at`` is
    when the terminal status was read.

    Resuming: every transition's ``cursor`` (and ``tracker.cursor`` between polls) encodes the position right
    after it; ``SessionTracker(session_id, since=cursor)`` carries on from there with nothing repeated.
    Memory stays bounded: only the newest event time and the ids yielded at that time are kept, so an event the
    server back-dates before that time is taken as already seen.
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
        self._watermark: datetime | None = None  # created_at of the newest yielded event
        self._ids_at_watermark: set[str] = set()
        self._floor_id: str | None = None  # ids at the watermark up to this one count as seen (see _remember)
        self._last_status: str | None = None  # normalised
        self._state: str | None = None
        self._last_kind: str | None = None
        self._pending_end_at: datetime | None = None
        if since is not None:
            self._restore(_decode_cursor(since, session_id))

    @property
    def state(self) -> str | None:
        """The session's state as far as seen: initializing, started, live, interrupted, stopped or ended."""
        return self._state

    @property
    def watermark(self) -> datetime | None:
        """``created_at`` of the newest event yielded (or resumed from); None before the first."""
        return self._watermark

    @property
    def ended(self) -> bool:
        """True once ``Ended`` was returned: every later ``feed`` returns ``[]``."""
        return self._last_kind == "ended"

    @property
    def awaiting_final_events(self) -> bool:
        """True after a terminal status: read events once more and feed them; that ``feed`` ends the stream."""
        return self._pending_end_at is not None and not self.ended

    @property
    def cursor(self) -> str:
        """The position right now; ``since=`` it resumes here."""
        return _encode_cursor(
            _Cursor(
                v=_CURSOR_VERSION,
                s=self.session_id,
                t=self._watermark,
                i=sorted(self._ids_at_watermark),
                f=self._floor_id,
                st=self._last_status,
                sa=self._state,
                k=self._last_kind,
                e=self._pending_end_at,
            )
        )

    def is_older(self, event: Event) -> bool:
        """True if the event was created before the newest yielded one: paging newest-first can stop there.

        Events of that very instant are not "older": one may have been written after the last read, and ``feed``
        drops those already yielded.
        """
        return self._watermark is not None and event.created_at < self._watermark

    def is_seen(self, event: Event) -> bool:
        """True if this event was yielded already or is older than the newest yielded one."""
        if self._watermark is None or event.created_at > self._watermark:
            return False
        if event.created_at < self._watermark:
            return True
        return event.id in self._ids_at_watermark or (self._floor_id is not None and event.id <= self._floor_id)

    def feed(self, status: str | None, events: Iterable[Event], at: datetime) -> list[Transition]:
        """One poll: the status read (None if it failed), the events read, and when; the transitions to yield."""
        if self.ended:
            return []
        fresh = self._unseen_in_order(events)
        if self.awaiting_final_events:
            out = self._emit_events(fresh)
            if not self.ended:
                out.append(self._emit("ended", "status", self._pending_end_at or at, None, "ended"))
            return out
        out, hold_end = self._observe_status(status, fresh, at) if status is not None else ([], False)
        out += self._emit_events(fresh)
        if hold_end and not self.ended:
            # Set only now, so that the cursors of this poll's events replay the terminal status on resume.
            self._pending_end_at = at
        return out

    # -- helpers --------------------------------------------------------------------------------------------

    def _unseen_in_order(self, events: Iterable[Event]) -> list[Event]:
        by_id: dict[str, Event] = {}
        for event in events:
            if event.id not in by_id and not self.is_seen(event):
                by_id[event.id] = event
        return sorted(by_id.values(), key=lambda e: (e.created_at, e.id))

    def _observe_status(self, status: str, fresh: list[Event], at: datetime) -> tuple[list[Transition], bool]:
        """The status transition of this poll, if any, and whether to hold back a terminal one."""
        normalised = _normalise(status)
        if normalised == self._last_status:
            return [], False
        kind = self.table.kind_for_status(status)
        if kind == "unknown":
            self._last_status = normalised
            return [self._emit("unknown", "status", at, None, status)], False
        target = _STATE_BY_KIND[kind]
        # After an unknown status, a known one is news even if the state did not change: the last thing the
        # user was told is the unknown value, so without this "degraded" would stand while the session is live.
        back_from_unknown = self._last_status is not None and self.table.kind_for_status(self._last_status) == "unknown"
        # Status and events are read moments apart: the status may lag or lead the events of the same poll.
        if target in self._states_after(fresh) or (target == self._state and not back_from_unknown):
            self._last_status = normalised
            return [], False
        if kind == "ended":
            return [], True  # wait for the final events read: Ended should carry the server's event
        self._last_status = normalised
        return [self._emit(kind, "status", at, None, status)], False

    def _states_after(self, fresh: list[Event]) -> set[str]:
        states = set()
        for event in fresh:
            state = _STATE_BY_KIND.get(self.table.kind_for_action(event.action))
            if state is not None:
                states.add(state)
        return states

    def _emit_events(self, fresh: list[Event]) -> list[Transition]:
        out: list[Transition] = []
        for event in fresh:
            self._remember(event)
            out.append(
                self._emit(self.table.kind_for_action(event.action), "event", event.created_at, event, event.action)
            )
            if self.ended:
                break
        return out

    def _remember(self, event: Event) -> None:
        if self._watermark is None or event.created_at > self._watermark:
            self._watermark = event.created_at
            self._ids_at_watermark = {event.id}
            self._floor_id = None
            return
        self._ids_at_watermark.add(event.id)  # a late event at the watermark's own timestamp
        if len(self._ids_at_watermark) > _MAX_IDS_AT_WATERMARK:
            # A pathological burst sharing one timestamp: forget the smallest ids, and count every id up to the
            # largest forgotten one as seen, so the set (and the cursor) stay small.
            ordered = sorted(self._ids_at_watermark)
            keep = _MAX_IDS_AT_WATERMARK // 2
            self._floor_id = max(ordered[-keep - 1], self._floor_id or "")
            self._ids_at_watermark = set(ordered[-keep:])

    def _emit(
        self, kind: str, source: Literal["status", "event"], at: datetime, event: Event | None, raw: str
    ) -> Transition:
        previous, self._last_kind = self._last_kind, kind
        self._state = _STATE_BY_KIND.get(kind, self._state)
        cursor = self.cursor
        if kind == "unknown":
            return Unknown(
                session_id=self.session_id, channel_id=self.channel_id, source=source, event=event, at=at,
                previous=previous, cursor=cursor, raw=raw,
            )  # fmt: skip
        return TRANSITION_TYPES[kind](
            session_id=self.session_id, channel_id=self.channel_id, source=source, event=event, at=at,
            previous=previous, cursor=cursor,
        )  # fmt: skip

    def _restore(self, c: _Cursor) -> None:
        self._watermark, self._ids_at_watermark, self._floor_id = c.t, set(c.i), c.f
        self._last_status, self._state, self._last_kind, self._pending_end_at = c.st, c.sa, c.k, c.e


# The state each kind puts the session in; ``unknown`` leaves it as it was.
_STATE_BY_KIND: dict[str, str] = {
    "initializing": "initializing",
    "started": "started",
    "live": "live",
    "stable": "live",
    "restored": "live",
    "interrupted": "interrupted",
    "stopped": "stopped",
    "ended": "ended",
}

# Real timestamps have millisecond precision, so more ids than this at one instant is a burst to degrade on.
_MAX_IDS_AT_WATERMARK = 128
_CURSOR_VERSION = 1


class _Cursor(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    """What a cursor encodes; one-letter keys keep it short."""

    v: int
    s: str  # session id
    t: datetime | None = None  # watermark: created_at of the newest yielded event
    i: list[str] = msgspec.field(default_factory=list)  # ids yielded at exactly t
    f: str | None = None  # floor: ids at t up to this one count as seen
    st: str | None = None  # last status observed, normalised
    sa: str | None = None  # session state
    k: str | None = None  # kind of the last transition
    e: datetime | None = None  # terminal status read at this time, final events read pending


_cursor_decoder = msgspec.json.Decoder(_Cursor)


def _encode_cursor(c: _Cursor) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(c)).rstrip(b"=").decode("ascii")


def _decode_cursor(cursor: str, session_id: str) -> _Cursor:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        c = _cursor_decoder.decode(raw)
    except (binascii.Error, ValueError, msgspec.DecodeError, RecursionError) as exc:
        raise ValueError(f"not a watch cursor (pass a Transition.cursor unchanged): {cursor[:40]!r}") from exc
    if c.v != _CURSOR_VERSION:
        raise ValueError(f"watch cursor of version {c.v}, this sigma-async reads version {_CURSOR_VERSION}")
    if c.s != session_id:
        raise ValueError(f"watch cursor belongs to session {c.s!r}, not {session_id!r}")
    if (c.k is not None and c.k not in KINDS) or (c.sa is not None and c.sa not in _STATE_BY_KIND.values()):
        raise ValueError(f"watch cursor names an unknown kind or state: {c.k!r}, {c.sa!r}")
    if c.t is None and (c.i or c.f is not None):
        raise ValueError("watch cursor has event ids but no watermark")
    return c
