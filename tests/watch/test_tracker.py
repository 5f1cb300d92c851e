"""SessionTracker: the pure state machine behind every watch, driven poll by poll without a loop or sockets."""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sigma_async.models import Event
from sigma_async.transitions import Ended, Live, Restored, Transition, Unknown
from sigma_async.watch import SessionTracker

SID = "5017085c-d828-491d-837f-2160df3e07c1"
T0 = datetime(2024, 7, 22, 11, 34, 0, tzinfo=timezone.utc)

Poll = tuple[str | None, list[Event], datetime]


def ev(n: int, action: str, *, ms: int | None = None, id: str | None = None, updated_ms: int | None = None) -> Event:
    """Event number n, created n ms after T0 unless told otherwise; ``updated_ms`` writes it later than that."""
    created = T0 + timedelta(milliseconds=n if ms is None else ms)
    updated = created if updated_ms is None else T0 + timedelta(milliseconds=updated_ms)
    return Event(id=id or f"ev-{n:06d}", action=action, created_at=created, updated_at=updated, session_id=SID)


def obs(n: int) -> datetime:
    """The time of poll n: well after the events the tests create."""
    return T0 + timedelta(hours=1, seconds=2 * n)


def kinds(ts: Iterable[Transition]) -> list[str]:
    return [t.kind for t in ts]


def run(tracker: SessionTracker, polls: Sequence[Poll]) -> list[Transition]:
    return [t for status, events, at in polls for t in tracker.feed(status, events, at)]


class Server:
    """One session as the server holds it: its events, and its status at each moment; read as a poller reads."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.status = "initializing"
        self.reads = 0

    def write(self, action: str, *, status: str | None = None) -> Event:
        n = len(self.events)
        event = ev(n, action, id=f"ev-{n:06d}")
        self.events.append(event)
        if status is not None:
            self.status = status
        return event

    def read(self, tracker: SessionTracker, per_page: int = 10) -> list[Event]:
        """Newest first by updatedAt, page by page, down to the first page that ends in an event already known."""
        newest_first = sorted(self.events, key=lambda e: (e.updated_at or e.created_at, e.id), reverse=True)
        read: list[Event] = []
        for start in range(0, len(newest_first), per_page):
            page = newest_first[start : start + per_page]
            self.reads += len(page)
            read += page
            if tracker.ends_read(page[-1]):
                break
        return read

    def poll(self, tracker: SessionTracker, n: int) -> list[Transition]:
        status = None if tracker.awaiting_final_events else self.status
        return tracker.feed(status, self.read(tracker), obs(n))


# The emulator's lifecycle, step by step: (event action, status after it).
LIFECYCLE = [
    ("initialize", "initializing"),
    ("start", None),
    (None, "live"),
    ("stable", None),
    ("signal_interrupted", "interrupted"),
    ("signal_restored", "live"),
    ("stop", None),
    ("ended", "ended"),
]


def play(steps: Sequence[tuple[str | None, str | None]], poll_after: set[int]) -> list[Transition]:
    """Write the steps, polling after those in ``poll_after`` and until the stream ends."""
    server, tracker, out = Server(), SessionTracker(SID), []
    for i, (action, status) in enumerate(steps):
        if action is not None:
            server.write(action, status=status)
        elif status is not None:
            server.status = status
        if i in poll_after:
            out += server.poll(tracker, i)
    n = len(steps)
    while not tracker.ended:
        out += server.poll(tracker, n)
        n += 1
    return out


# -- the two dimensions ---------------------------------------------------------------------------------------


def test_the_normal_lifecycle_yields_live_once_before_the_first_signal_transition() -> None:
    out = play(LIFECYCLE, set(range(len(LIFECYCLE))))
    assert kinds(out) == ["initializing", "started", "live", "stable", "interrupted", "restored", "stopped", "ended"]
    live = out[2]
    assert isinstance(live, Live) and live.source == "status" and live.event is None
    assert [t.source for t in out if t.kind != "live"] == ["event"] * 7
    assert out[-1].event is not None and out[-1].event.action == "ended"


@given(st.sets(st.integers(0, len(LIFECYCLE) - 1)))
@settings(max_examples=100, deadline=None)
def test_the_same_history_gives_the_same_stream_whatever_the_poll_timing(polls: set[int]) -> None:
    reference = play(LIFECYCLE, set(range(len(LIFECYCLE))))
    out = play(LIFECYCLE, polls)
    assert [(t.kind, t.id) for t in out] == [(t.kind, t.id) for t in reference]


@given(st.sets(st.integers(0, 3)))
@settings(max_examples=50, deadline=None)
def test_live_then_an_interruption_ends_at_interrupted_whatever_the_timing(polls: set[int]) -> None:
    # Status live on every poll, events [stable, signal_interrupted] and no restore.
    steps = [("initialize", "initializing"), (None, "live"), ("stable", None), ("signal_interrupted", None)]
    server, tracker, out = Server(), SessionTracker(SID), []
    for i, (action, status) in enumerate(steps):
        if action is not None:
            server.write(action)
        if status is not None:
            server.status = status
        if i in polls:
            out += server.poll(tracker, i)
    for n in range(3):  # the session stays like this: more polls change nothing
        out += server.poll(tracker, 10 + n)
    # Started is implied by being on air, even though no start event was written.
    assert kinds(out) == ["initializing", "started", "live", "stable", "interrupted"]


def test_a_session_first_watched_after_it_ended_still_gives_live_its_events_then_ended() -> None:
    server = Server()
    for action, status in LIFECYCLE:
        if action is not None:
            server.write(action, status=status)
        elif status is not None:
            server.status = status
    tracker = SessionTracker(SID)
    out = server.poll(tracker, 0)
    assert kinds(out) == ["initializing", "started", "live", "stable", "interrupted", "restored", "stopped", "ended"]
    assert out[2].at == server.events[2].created_at  # dated by the first sign of being on air


def test_started_at_is_evidence_of_being_on_air() -> None:
    tracker = SessionTracker(SID)
    started = T0 + timedelta(seconds=3)
    # Like a status, startedAt waits for the events to place it (until the next poll): none came, so it is
    # placed then, dated by startedAt itself.
    assert kinds(tracker.feed("initializing", [ev(1, "initialize")], obs(1), started_at=started)) == ["initializing"]
    out = tracker.feed("live", [], obs(2), started_at=started)
    assert kinds(out) == ["started", "live"]
    assert out[1].at == started
    assert tracker.feed("live", [], obs(3), started_at=started) == []


def test_signal_events_never_change_the_status_stream_and_statuses_never_hide_events() -> None:
    tracker = SessionTracker(SID)
    out = tracker.feed("live", [], obs(1))
    out += tracker.feed("interrupted", [ev(1, "signal_interrupted")], obs(2))
    out += tracker.feed("live", [ev(2, "signal_restored")], obs(3))
    out += tracker.feed("live", [ev(3, "stable")], obs(4))
    assert [(t.kind, t.source) for t in out] == [
        ("initializing", "status"), ("started", "status"), ("live", "status"),
        ("interrupted", "event"), ("restored", "event"), ("stable", "event"),
    ]  # fmt: skip
    assert tracker.status == "live" and tracker.signal == "stable"


def test_a_status_never_goes_backwards_and_each_step_is_yielded_once() -> None:
    tracker = SessionTracker(SID)
    out = run(tracker, [("live", [], obs(1)), ("initializing", [], obs(2)), ("started", [], obs(3)),
                        ("live", [], obs(4)), ("stopped", [], obs(5)), ("live", [], obs(6))])  # fmt: skip
    # A stop shown by the status alone waits one poll for its event, then comes from the status.
    assert kinds(out) == ["initializing", "started", "live", "stopped"]
    assert {t.source for t in out} == {"status"}


def test_an_unknown_status_is_yielded_once_per_change() -> None:
    tracker = SessionTracker(SID)
    out = run(tracker, [("live", [], obs(1)), ("warming", [], obs(2)), ("warming", [], obs(3)),
                        ("live", [], obs(4)), ("paused", [], obs(5)), ("warming", [], obs(6))])  # fmt: skip
    assert kinds(out) == ["initializing", "started", "live", "unknown", "unknown", "unknown"]
    assert [t.raw for t in out if isinstance(t, Unknown)] == ["warming", "paused", "warming"]
    assert len({t.id for t in out}) == len(out)


def test_an_on_air_event_after_live_is_that_step_not_a_second_live() -> None:
    tracker = SessionTracker(SID)
    out = tracker.feed("live", [], obs(1)) + tracker.feed("live", [ev(1, "on_publish")], obs(2))
    assert kinds(out) == ["initializing", "started", "live"]
    assert tracker.is_seen(ev(1, "on_publish"))


def test_raw_values_are_normalised_but_unknown_keeps_the_servers_spelling() -> None:
    tracker = SessionTracker(SID)
    out = tracker.feed(" LIVE ", [ev(1, "Signal Interrupted"), ev(2, "signal-lost"), ev(3, "Brand New Thing")], obs(1))
    assert kinds(out) == ["initializing", "started", "live", "interrupted", "interrupted", "unknown"]
    assert isinstance(out[-1], Unknown) and out[-1].raw == "Brand New Thing"
    status_out = tracker.feed("Some Odd-Status", [], obs(2))
    assert isinstance(status_out[0], Unknown)
    assert (status_out[0].raw, status_out[0].source) == ("Some Odd-Status", "status")


# -- ended ----------------------------------------------------------------------------------------------------


def test_ended_carries_the_ended_event_written_after_the_status_flipped() -> None:
    tracker = SessionTracker(SID)
    out = tracker.feed("live", [ev(1, "stable")], obs(1))
    out += tracker.feed("ended", [], obs(2))
    assert tracker.awaiting_final_events and kinds(out) == ["initializing", "started", "live", "stable"]
    late_end = ev(2, "ended", ms=5_000)  # written 100 ms after the status flipped, read one interval later
    out += tracker.feed(None, [late_end], obs(3))
    assert isinstance(out[-1], Ended) and out[-1].event == late_end and out[-1].source == "event"
    assert tracker.ended and tracker.feed("live", [ev(3, "stable")], obs(4)) == []


def test_without_an_ended_event_the_final_read_ends_the_stream_from_the_status() -> None:
    tracker = SessionTracker(SID)
    tracker.feed("ended", [], obs(1))
    out = tracker.feed(None, [], obs(2))
    assert kinds(out) == ["initializing", "ended"]  # opened, never on air: no Started, no Live
    assert isinstance(out[-1], Ended) and out[-1].source == "status" and out[-1].at == obs(1)


def test_events_after_the_ended_event_in_one_read_come_before_ended() -> None:
    out = SessionTracker(SID).feed("live", [ev(2, "ended"), ev(3, "stable"), ev(1, "stable")], obs(1))
    assert kinds(out) == ["initializing", "started", "live", "stable", "stable", "ended"]


# -- every listed event exactly once --------------------------------------------------------------------------


def test_an_event_written_late_with_an_old_created_at_is_yielded_when_first_seen() -> None:
    tracker = SessionTracker(SID)
    tracker.feed("live", [ev(1, "stable"), ev(2, "signal_interrupted")], obs(1))
    late = ev(3, "signal_restored", ms=0, updated_ms=10)  # created before both, written after them
    assert not tracker.is_seen(late)
    out = tracker.feed("live", [late], obs(2))
    assert [t.event for t in out] == [late]
    assert tracker.feed("live", [late], obs(3)) == []


def test_more_than_128_events_sharing_a_timestamp_then_more_later_none_dropped() -> None:
    tracker = SessionTracker(SID)
    first = [ev(n, "stable", ms=1, id=f"id-{random.Random(n).random():.12f}") for n in range(200)]
    out = tracker.feed(None, random.Random(3).sample(first, len(first)), obs(1))
    later = [ev(n, "stable", ms=1, id=f"id-{random.Random(n).random():.12f}") for n in range(200, 400)]
    out += tracker.feed(None, first + later, obs(2))
    assert sorted(t.event.id for t in out if t.event) == sorted(e.id for e in first + later)
    assert tracker.feed(None, first + later, obs(3)) == []


def test_an_edited_event_is_not_yielded_again_and_is_read_once() -> None:
    server, tracker = Server(), SessionTracker(SID)
    for _ in range(1000):
        server.write("stable")
    first = server.poll(tracker, 0)
    assert len(first) == 1003  # initializing (the status), started and live (on air), then every event
    edited_at = T0 + timedelta(milliseconds=1500)
    server.events = [
        msgspec_replace(e, updated_at=edited_at + timedelta(milliseconds=i)) for i, e in enumerate(server.events)
    ]
    assert server.poll(tracker, 1) == []  # read once after the edit, yielded not again
    server.reads = 0
    server.events.append(ev(1000, "signal_interrupted", ms=5000))
    assert kinds(server.poll(tracker, 2)) == ["interrupted"]
    assert server.reads <= 10  # one page: it ends in an event read before


def msgspec_replace(event: Event, **changes: object) -> Event:
    return msgspec.structs.replace(event, **changes)


def test_duplicates_and_re_sent_pages_are_not_yielded_again() -> None:
    tracker = SessionTracker(SID)
    first = [ev(n, "stable") for n in range(10)]
    assert len(tracker.feed(None, first + first, obs(1))) == 13  # initializing, started, live, ten events
    assert tracker.feed(None, first, obs(2)) == []
    newer = [ev(n, "stable") for n in range(10, 15)]
    out = tracker.feed(None, list(reversed(first + newer)) + newer, obs(3))
    assert [t.event for t in out] == newer


# -- ids and cursors ------------------------------------------------------------------------------------------


def test_ids_are_stable_and_unique_across_sessions() -> None:
    a = play(LIFECYCLE, {0, 3, 7})
    assert len({t.id for t in a}) == len(a)
    assert all(t.id.startswith(SID) for t in a)
    # A lifecycle step's id is the state reached, whichever source showed it first; a signal's is its event's.
    assert a[0].id == f"{SID}/status/initializing" and a[2].id == f"{SID}/status/live"
    assert a[3].id == f"{SID}/event/ev-000002"
    other = SessionTracker("other").feed("live", [ev(1, "stable")], obs(1))
    assert not {t.id for t in other} & {t.id for t in a}


def assert_resumes_exactly(polls: Sequence[Poll]) -> None:
    tracker = SessionTracker(SID, channel_id="ch-1")
    out: list[tuple[int, Transition]] = []
    for i, (status, events, at) in enumerate(polls):
        out += [(i, t) for t in tracker.feed(status, events, at)]
    transitions = [t for _, t in out]
    for k, (poll, t) in enumerate(out):
        # A watcher resumed from a transition's cursor reads that poll again, and the ones after it.
        resumed = SessionTracker(SID, channel_id="ch-1", since=t.cursor)
        assert resumed.ended == isinstance(t, Ended)
        assert run(resumed, polls[poll:]) == transitions[k + 1 :]


STATUSES = [None, "initializing", "started", "live", "stable", "interrupted", "stopped", "paused"]
ACTIONS = ["initialize", "start", "stable", "signal_interrupted", "signal_restored", "stop", "x"]


@st.composite
def sessions(draw: st.DrawFn) -> list[Poll]:
    """Random polls of a random session, each reading the new events and some old ones, maybe ending."""
    log: list[Event] = []
    polls: list[Poll] = []
    delivered = 0
    for i in range(draw(st.integers(1, 8))):
        for _ in range(draw(st.integers(0, 3))):
            ms = draw(st.integers(len(log), len(log) + 1))  # sometimes two events share an instant
            log.append(ev(len(log), draw(st.sampled_from(ACTIONS)), ms=ms))
        start = draw(st.integers(0, delivered))  # all that is new, and maybe some read before
        polls.append((draw(st.sampled_from(STATUSES)), draw(st.permutations(log[start:])), obs(i)))
        delivered = len(log)
    if draw(st.booleans()):
        end = ev(len(log), "ended", ms=len(log) + 1)
        polls.append(("ended", list(reversed(log[-3:])), obs(100)))
        polls.append((None, [*log, end][-3:], obs(101)))
    return polls


@given(sessions())
@settings(max_examples=200, deadline=None)
def test_random_sessions_keep_the_contract_and_resume_exactly(polls: list[Poll]) -> None:
    out = run(SessionTracker(SID), polls)
    events = [t.event for t in out if t.event]
    assert len({e.id for e in events}) == len(events)
    assert not any(isinstance(t, Ended) for t in out[:-1])
    assert kinds(out).count("live") <= 1
    signals = [i for i, t in enumerate(out) if t.kind in ("stable", "interrupted", "restored")]
    if signals:
        assert "live" in kinds(out[: signals[0]])
    assert [t.previous for t in out] == [None, *kinds(out)][: len(out)]
    assert len({t.id for t in out}) == len(out)
    assert_resumes_exactly(polls)


def test_a_cursor_restores_both_dimensions() -> None:
    tracker = SessionTracker(SID)
    last = tracker.feed("live", [ev(1, "stable"), ev(2, "signal_interrupted")], obs(1))[-1]
    resumed = SessionTracker(SID, since=last.cursor)
    assert (resumed.status, resumed.signal) == ("live", "interrupted")
    assert resumed.is_seen(ev(2, "signal_interrupted"))
    nxt = resumed.feed("live", [ev(3, "signal_restored")], obs(2))
    assert isinstance(nxt[0], Restored) and nxt[0].previous == "interrupted"


def test_a_cursor_taken_after_ended_resumes_an_ended_tracker() -> None:
    end = SessionTracker(SID).feed("ended", [ev(1, "ended")], obs(1))[-1]
    resumed = SessionTracker(SID, since=end.cursor)
    assert resumed.ended and resumed.feed("live", [ev(2, "stable")], obs(2)) == []


def test_a_cursor_is_short_urlsafe_text_even_after_a_burst() -> None:
    tracker = SessionTracker(SID)
    burst = [ev(n, "stable", ms=1, id=f"id-{n:05d}") for n in range(2_000)]
    out = tracker.feed(None, burst, obs(1))
    assert len(out[-1].cursor) < 8_000
    assert set(out[-1].cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    # Past the cursor's id budget a resume may repeat some of that one millisecond, never skip any.
    again = SessionTracker(SID, since=tracker.cursor).feed(None, burst, obs(2))
    assert {t.id for t in again} <= {t.id for t in out}


@pytest.mark.parametrize(
    ("cursor", "message"),
    [
        ("not a cursor!", "not a watch cursor"),
        ("", "not a watch cursor"),
        ("eyJ2IjogMSwgInMiOiA0Mn0", "not a watch cursor"),
    ],
)
def test_a_bad_cursor_is_a_clear_value_error(cursor: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SessionTracker(SID, since=cursor)


def test_a_cursor_of_another_session_is_refused() -> None:
    cursor = SessionTracker("other-session").feed("live", [ev(1, "stable")], obs(1))[0].cursor
    with pytest.raises(ValueError, match="belongs to session 'other-session'"):
        SessionTracker(SID, since=cursor)


def test_a_damaged_cursor_is_a_value_error_at_the_call() -> None:
    tracker = SessionTracker(SID, channel_id="ch-1")
    cursor = tracker.feed("live", [ev(n, "stable") for n in range(5)], obs(1))[-1].cursor
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    rng = random.Random(15)
    same = 0
    for _ in range(300):
        i = rng.randrange(len(cursor))
        bad = cursor[:i] + rng.choice(alphabet.replace(cursor[i], "")) + cursor[i + 1 :]
        try:
            resumed = SessionTracker(SID, since=bad)
        except ValueError:
            continue
        # Only a change in the last character's unused padding bits decodes to the very same bytes.
        assert resumed.cursor == SessionTracker(SID, since=cursor).cursor
        same += 1
    assert same <= 8
    for cut in (1, 4, 9, len(cursor) // 2):
        with pytest.raises(ValueError, match="damaged"):
            SessionTracker(SID, since=cursor[:-cut])


def test_a_cursor_of_the_earlier_json_form_still_resumes() -> None:
    import base64

    old = {
        "v": 2, "s": SID, "m": ev(2, "stable").created_at.isoformat(), "i": ["ev-000002"], "r": 5, "lv": True,
        "g": "stable", "st": "live", "k": "stable",
    }  # fmt: skip
    cursor = base64.urlsafe_b64encode(msgspec.json.encode(old)).rstrip(b"=").decode()
    resumed = SessionTracker(SID, since=cursor)
    assert (resumed.status, resumed.signal) == ("live", "stable")
    assert resumed.feed("live", [ev(2, "stable"), ev(3, "signal_interrupted")], obs(1))[0].kind == "interrupted"


def test_the_end_waits_a_whole_hold_for_its_event_and_then_carries_it() -> None:
    tracker = SessionTracker(SID, hold=1.0)
    tracker.feed("live", [ev(1, "stable")], obs(1))
    tracker.feed("ended", [], obs(2))
    assert tracker.feed(None, [], obs(2) + timedelta(seconds=0.95)) == []  # not yet: its event may still come
    late_end = ev(2, "ended", ms=3_000)
    out = tracker.feed(None, [late_end], obs(2) + timedelta(seconds=1.0))
    assert [t.kind for t in out] == ["ended"] and out[0].event == late_end


def test_a_slow_answer_does_not_release_what_a_later_status_showed() -> None:
    # The status read answered at 2.5 s showed the end; a read that began at 3.2 s (less than a hold after the
    # answer) may have been made before the end's event was written: it ends nothing.
    tracker = SessionTracker(SID, hold=1.0)
    tracker.feed("live", [ev(1, "stable")], obs(1))
    tracker.feed("ended", [], obs(2), status_at=obs(2) + timedelta(seconds=0.5))
    assert tracker.feed(None, [], obs(2) + timedelta(seconds=1.2)) == []
    assert kinds(tracker.feed(None, [], obs(2) + timedelta(seconds=1.5))) == ["ended"]


def test_a_status_shown_step_waits_for_its_event_to_take_its_place() -> None:
    # Live shown by the status before its start and stable events, with an event the SDK does not know written in
    # between: whatever the timing, the unknown event comes where it was written, before Started and Live.
    tracker = SessionTracker(SID, hold=1.0)
    out = tracker.feed("initializing", [ev(1, "initialize")], obs(1))
    out += tracker.feed("live", [], obs(2))  # the status runs ahead
    assert kinds(out) == ["initializing"]
    out += tracker.feed("live", [ev(2, "archived"), ev(3, "start"), ev(4, "stable")], obs(2) + timedelta(seconds=0.5))
    assert kinds(out) == ["initializing", "unknown", "started", "live", "stable"]
