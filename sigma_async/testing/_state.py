"""The emulator's world: channels, sessions and their events, the session lifecycle and its timers. No I/O."""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import msgspec

from ..models import ChannelCreateBody, Event, EventAction, Status
from ._clock import Clock
from ._index import RecencyIndex
from ._records import ChannelState, SessionState, publisher_info, uuid4_from

__all__ = ["ChannelState", "EmulatorError", "EmulatorState", "SessionState"]

MESSAGES = {
    EventAction.INITIALIZE: "Khởi tạo phiên live",
    EventAction.START: "Kênh bắt đầu phát",
    EventAction.STABLE: "Kênh ổn định",
    EventAction.SIGNAL_INTERRUPTED: "Tín hiệu bị gián đoạn",
    EventAction.SIGNAL_RESTORED: "Tín hiệu đã được khôi phục",
    EventAction.STOP: "Dừng kênh",
    EventAction.ENDED: "Kênh đã kết thúc",
}
_TICK = timedelta(microseconds=1)


class EmulatorError(Exception):
    """An operation the API would refuse: ``status`` is the HTTP status it answers (404, 409, 400, ...)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class EmulatorState:
    """Channels and sessions, and the rules that move them. Every method runs to completion without awaiting.

    Methods that take ``key`` accept a channel id (its current session) or a session id.
    """

    def __init__(self, clock: Clock, *, app_id: str, rng: random.Random | None = None) -> None:
        self.clock = clock
        self.app_id = app_id
        self.channels: dict[str, ChannelState] = {}
        self.sessions: dict[str, SessionState] = {}
        #: Base of ``liveStreamUrl``; the server sets it once it knows its own address.
        self.public_url = "http://127.0.0.1"
        #: Called whenever a session gains a deadline, so a timer task can wake up for it.
        self.on_deadline: Callable[[], object] | None = None
        #: Scheduled actions (``_control.AutoPublisher``): told of each new session, run at the start of every
        #: ``tick`` (before sessions time out), and their next due time counted in ``next_deadline``.
        self.on_session_start: Callable[[SessionState], object] | None = None
        self.before_tick: Callable[[], object] | None = None
        self.next_scheduled: Callable[[], datetime | None] | None = None
        #: Told whenever a session's publisher, signal or end changes: what its HLS output follows (``_hls``).
        self.on_output_change: Callable[[SessionState], object] | None = None
        #: The app's events and sessions in written order, for listings without ``q`` (``poll="feed"``).
        self.event_index: RecencyIndex[Event] = RecencyIndex()
        self.session_index: RecencyIndex[SessionState] = RecencyIndex()
        #: Each channel's session ids, oldest first, kept after the channel is deleted (its sessions stay listed).
        self.channel_sessions: dict[str, list[str]] = {}
        #: Whether listings without ``q`` are served (off: they answer 400, as a server that does not has it).
        self.app_wide_listings = True
        #: The most items a listing page holds, whatever ``perPage`` asked (None: no cap beyond the API's).
        self.max_per_page: int | None = None
        #: Real seconds every API answer is held back before it is made, as a loaded server's are (0: none).
        self.latency = 0.0
        #: Event ids whose wire form is replaced by this raw JSON object (malformed events for tests).
        self.raw_events: dict[str, bytes] = {}
        self._last_stamp = datetime.min.replace(tzinfo=timezone.utc)
        self._rng = rng or random.Random()
        # (deadline, session id), a heap with stale entries skipped lazily: a request's tick costs O(log n) for
        # thousands of armed sessions, not a scan of them all.
        self._deadlines: list[tuple[datetime, str]] = []

    # -- channels -------------------------------------------------------------------------------------------

    def create_channel(self, spec: ChannelCreateBody) -> ChannelState:
        if not spec.name.strip():
            raise EmulatorError(422, "name must not be empty")
        if spec.stop_timeout < 0:
            raise EmulatorError(422, "stopTimeout must be a non-negative number of seconds")
        now = self.clock.now()
        cid = self.new_id()
        token = f"{cid[:5]}-{self._rng.getrandbits(80):020x}-{cid[-5:]}"
        channel = ChannelState(
            id=cid,
            spec=spec,
            app_id=self.app_id,
            input_id=self.new_id(),
            stream_token=token,
            live_stream_url=f"{self.public_url}/manifest/{cid}/master.m3u8",
            created_at=now,
            updated_at=now,
        )
        self.channels[cid] = channel
        self.channel_sessions[cid] = channel.session_ids
        return channel

    def channel(self, channel_id: str) -> ChannelState:
        try:
            return self.channels[channel_id]
        except KeyError:
            raise EmulatorError(404, f"Channel {channel_id} not found") from None

    def start_channel(self, channel_id: str) -> ChannelState:
        """Open a new session (``initializing``) on the channel; 409 if one is already open."""
        channel = self.channel(channel_id)
        if channel.current_session_id is not None:
            raise EmulatorError(409, f"Channel {channel_id} is already started")
        # After the channel's last change even when the clock has not moved: a new session is the newest by
        # updatedAt, as it is on a server whose clock runs.
        now = max(self.clock.now(), channel.updated_at + _TICK)
        session = SessionState(
            id=self.new_id(),
            channel=channel,
            name=f"{channel.name}_{now:%Y-%m-%d-%H:%M:%S}",
            status=Status.INITIALIZING,
            created_at=now,
            updated_at=now,
        )
        self.sessions[session.id] = session
        self.session_index.put(session.id, now, session)
        channel.session_ids.append(session.id)
        channel.current_session_id = session.id
        channel.updated_at = now
        self._event(session, EventAction.INITIALIZE, actor="user")
        # No encoder yet is no signal: without one for stopTimeout seconds the session ends by itself.
        self._arm_deadline(session, now)
        if self.on_session_start is not None:
            self.on_session_start(session)
        return channel

    def stop_channel(self, channel_id: str) -> ChannelState:
        """End the channel's open session as its user would; 409 if none is open."""
        channel = self.channel(channel_id)
        if channel.current_session_id is None:
            raise EmulatorError(409, f"Channel {channel_id} is not started")
        self._end(self.sessions[channel.current_session_id], actor="user")
        return channel

    def delete_channel(self, channel_id: str) -> ChannelState:
        """Forget the channel, ending its open session first. Its past sessions stay listed."""
        channel = self.channel(channel_id)
        if channel.current_session_id is not None:
            self._end(self.sessions[channel.current_session_id], actor="user")
        del self.channels[channel_id]
        return channel

    # -- sessions -------------------------------------------------------------------------------------------

    def session(self, session_id: str) -> SessionState:
        try:
            return self.sessions[session_id]
        except KeyError:
            raise EmulatorError(404, f"Session {session_id} not found") from None

    def resolve(self, key: str) -> SessionState:
        """The session ``key`` names: a session id, or a channel id meaning its open session."""
        if key in self.sessions:
            return self.sessions[key]
        channel = self.channel(key)
        if channel.current_session_id is None:
            raise EmulatorError(409, f"Channel {key} has no open session: start it first")
        return self.sessions[channel.current_session_id]

    def connect_publisher(self, key: str) -> SessionState:
        """An encoder starts pushing: the first time the session goes ``live`` (events start, stable)."""
        session = self._open(key)
        if session.publisher_connected:
            raise EmulatorError(409, f"Session {session.id} already has a publisher")
        session.publisher_connected = True
        session.client_info = publisher_info(self._rng, session.channel)
        if session.started_at is None:
            session.started_at = self._event(session, EventAction.START, actor="system").created_at
            self._set_status(session, Status.LIVE)
            self._event(session, EventAction.STABLE)
        else:
            self._event(session, EventAction.SIGNAL_RESTORED, actor="system")
            self._set_status(session, Status.LIVE)
        session.signal_ok = True
        self._clear_deadline(session)
        self._output_changed(session)
        return session

    def disconnect_publisher(self, key: str) -> SessionState:
        """The encoder goes away: the signal is lost, and the session ends after ``stopTimeout`` without one."""
        session = self._open(key)
        if not session.publisher_connected:
            raise EmulatorError(409, f"Session {session.id} has no publisher")
        session.publisher_connected = False
        if session.signal_ok:
            self._lose_signal(session)
        self._output_changed(session)
        return session

    def interrupt_signal(self, key: str) -> SessionState:
        """The publisher stays connected but its signal drops (``signal_interrupted``, status ``interrupted``)."""
        session = self._open(key)
        if not session.publisher_connected or not session.signal_ok:
            raise EmulatorError(409, f"Session {session.id} has no signal to interrupt")
        self._lose_signal(session)
        self._output_changed(session)
        return session

    def restore_signal(self, key: str) -> SessionState:
        """The interrupted signal comes back (``signal_restored``, status ``live``)."""
        session = self._open(key)
        if not session.publisher_connected:
            raise EmulatorError(409, f"Session {session.id} has no publisher: connect one instead")
        if session.signal_ok:
            raise EmulatorError(409, f"Session {session.id} signal is not interrupted")
        session.signal_ok = True
        self._event(session, EventAction.SIGNAL_RESTORED, actor="system")
        self._set_status(session, Status.LIVE)
        self._clear_deadline(session)
        self._output_changed(session)
        return session

    def add_event(
        self,
        session_id: str,
        action: str,
        *,
        message: str | None = None,
        actor: str | None = None,
        at: datetime | None = None,
        bump_session: bool = True,
    ) -> Event:
        """Append any event, known action or not, without touching the session's status.

        ``bump_session=False``: the session's row keeps its ``updatedAt``, as on a server whose sessions listing
        lags behind its events.
        """
        session = self.session(session_id)
        row_updated = session.updated_at
        event = self._event(session, action, actor=actor, message=message, at=at)
        if not bump_session:
            session.updated_at = row_updated
            self.session_index.put(session.id, row_updated, session)
        return event

    def add_late_event(self, session_id: str, action: str, *, created_at: datetime) -> Event:
        """An event written now but dated earlier (its ``createdAt`` older than events already listed)."""
        session = self.session(session_id)
        event = self._event(session, action)
        return self._rewrite(session, event, msgspec.structs.replace(event, created_at=created_at))

    def edit_event(self, session_id: str, event_id: str, *, message: str | None = None) -> Event:
        """Edit an event: its ``updatedAt`` moves to now, its ``createdAt`` and id stay."""
        session = self.session(session_id)
        event = next((e for e in session.events if e.id == event_id), None)
        if event is None:
            raise EmulatorError(404, f"Event {event_id} not found")
        edited = msgspec.structs.replace(event, updated_at=self._stamp(session), message=message or event.message)
        return self._rewrite(session, event, edited)

    def add_malformed_event(self, session_id: str, action: str, /, **wire: object) -> Event:
        """An event listed with some wire fields replaced (``createdAt=None``, a naive timestamp, ...)."""
        event = self._event(self.session(session_id), action)
        body = msgspec.to_builtins(event)
        body.update({_camel(k): v for k, v in wire.items()})
        self.raw_events[event.id] = msgspec.json.encode(body)
        return event

    def set_status(self, session_id: str, status: str) -> SessionState:
        """Set any status string, known or not, without adding an event."""
        session = self.session(session_id)
        self._set_status(session, status)
        return session

    # -- timers ---------------------------------------------------------------------------------------------

    def tick(self) -> list[SessionState]:
        """End every session whose signal has been gone for ``stopTimeout``; returns those ended."""
        if self.before_tick is not None:
            self.before_tick()
        if not self._deadlines:
            return []
        now = self.clock.now()
        due: list[SessionState] = []
        # Popped in deadline order, so that two sessions ending in one jump end in the order they would have.
        while self._deadlines and self._deadlines[0][0] <= now:
            deadline, session_id = heapq.heappop(self._deadlines)
            session = self.sessions.get(session_id)
            if session is not None and session.deadline == deadline:
                due.append(session)
        for session in due:
            self._end(session, actor="system", at=session.deadline)
        return due

    def next_deadline(self) -> datetime | None:
        """When ``tick`` next has something to do: a session ending by itself, or a scheduled action."""
        ending = self._next_ending()
        scheduled = self.next_scheduled() if self.next_scheduled is not None else None
        return min((t for t in (ending, scheduled) if t is not None), default=None)

    def _next_ending(self) -> datetime | None:
        while self._deadlines:
            deadline, session_id = self._deadlines[0]
            session = self.sessions.get(session_id)
            if session is not None and session.deadline == deadline:
                return deadline
            heapq.heappop(self._deadlines)  # disarmed or re-armed since: stale
        return None

    def new_id(self) -> str:
        return uuid4_from(self._rng)

    # -- helpers --------------------------------------------------------------------------------------------

    def _open(self, key: str) -> SessionState:
        session = self.resolve(key)
        if session.ended:
            raise EmulatorError(409, f"Session {session.id} has ended")
        return session

    def _stamp(self, session: SessionState, at: datetime | None = None) -> datetime:
        # Strictly after the last change of any session even when the clock has not moved, so event order is
        # total across the app, as on a server whose clock runs (the app-wide feed reads back to a time); a
        # scripted time is taken as given, even one in the past.
        if at is None:
            when = max(self.clock.now(), session.updated_at + _TICK, self._last_stamp + _TICK)
            self._last_stamp = when
        else:
            when = at
            self._last_stamp = max(self._last_stamp, when)
        if when > session.updated_at:
            session.updated_at = when
            self.session_index.put(session.id, when, session)
        return when

    def _event(
        self,
        session: SessionState,
        action: str,
        *,
        actor: str | None = None,
        message: str | None = None,
        at: datetime | None = None,
    ) -> Event:
        when = self._stamp(session, at)
        event = Event(
            id=self.new_id(),
            action=action,
            created_at=when,
            updated_at=when,
            session_id=session.id,
            actor=actor,
            message=message if message is not None else MESSAGES.get(action),
        )
        session.events.append(event)
        self.event_index.put(event.id, when, event)
        return event

    def _rewrite(self, session: SessionState, old: Event, new: Event) -> Event:
        session.events[session.events.index(old)] = new
        self.event_index.put(new.id, new.updated_at or new.created_at, new)
        return new

    def _set_status(self, session: SessionState, status: str) -> None:
        session.status = status
        self._stamp(session)

    def _lose_signal(self, session: SessionState) -> None:
        session.signal_ok = False
        lost = self._event(session, EventAction.SIGNAL_INTERRUPTED, actor="system").created_at
        self._set_status(session, Status.INTERRUPTED)
        self._arm_deadline(session, lost)

    def _arm_deadline(self, session: SessionState, signal_gone_at: datetime) -> None:
        session.deadline = signal_gone_at + timedelta(seconds=session.channel.stop_timeout)
        heapq.heappush(self._deadlines, (session.deadline, session.id))
        if self.on_deadline is not None:
            self.on_deadline()

    def _clear_deadline(self, session: SessionState) -> None:
        session.deadline = None  # its heap entry is now stale and is skipped when it comes up

    def _end(self, session: SessionState, *, actor: str, at: datetime | None = None) -> None:
        if actor == "user":
            self._event(session, EventAction.STOP, actor=actor)
        # A timer ends the session when it fell due, not when somebody next looked.
        at = max(at, session.updated_at + _TICK) if at is not None else None
        ended = self._event(session, EventAction.ENDED, actor=actor, at=at)
        session.status = Status.ENDED
        session.finished_at = ended.created_at
        session.publisher_connected = session.signal_ok = False
        self._clear_deadline(session)
        channel = session.channel
        if channel.current_session_id == session.id:
            channel.current_session_id = None
        channel.updated_at = max(channel.updated_at, ended.created_at)
        self._output_changed(session)

    def _output_changed(self, session: SessionState) -> None:
        if self.on_output_change is not None:
            self.on_output_change(session)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)
