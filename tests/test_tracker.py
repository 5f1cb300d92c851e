"""SessionTracker: the pure state machine behind watch_session, driven poll by poll without a loop or sockets."""

from __future__ import annotations

import base64
import itertools
import random
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sigma_async._tracker import DEFAULT_TABLE, KIND_BY_ACTION, KIND_BY_STATUS, KindTable, SessionTracker
from sigma_async.models import Event
from sigma_async.transitions import Ended, Interrupted, Live, Restored, Stopped, Transition, Unknown

SID = "5017085c-d828-491d-837f-2160df3e07c1"
T0 = datetime(2024, 7, 22, 11, 34, 0, tzinfo=timezone.utc)

Poll = tuple[str | None, list[Event], datetime]


def ev(n: int, action: str, *, ms: int | None = None, id: str | None = None) -> Event:
    """Event number n, created n ms after T0 unless told otherwise."""
    created = T0 + timedelta(milliseconds=n if ms is None else ms)
    return Event(id=id or f"ev-{n:06d}", action=action, created_at=created, session_id=SID)


def obs(n: int) -> datetime:
    """The time of poll n: well after the events the tests create."""
    return T0 + timedelta(hours=1, seconds=2 * n)


def kinds(ts: Iterable[Transition]) -> list[str]:
    return [t.kind for t in ts]


def run(tracker: SessionTracker, polls: Sequence[Poll]) -> list[Transition]:
    return [t for status, events, at in polls for t in tracker.feed(status, events, at)]


# -- the lifecycle --------------------------------------------------------------------------------------------


def test_lifecycle_yields_each_kind_in_order_and_ended_last() -> None:
    tracker = SessionTracker(SID, channel_id="ch-1")
    live, stable = ev(1, "on_publish"), ev(2, "stable")
    lost, odd = ev(3, "signal_interrupted"), ev(4, "transcoder_hiccup")
    back, end = ev(5, "signal_restored"), ev(6, "ended")
    out = run(
        tracker,
        [
            ("live", [live], obs(1)),
            ("stable", [stable, live], obs(2)),
            ("interrupted", [odd, lost, stable], obs(3)),
            ("live", [back], obs(4)),
            ("ended", [end, back], obs(5)),
        ],
    )
    assert kinds(out) == ["live", "stable", "interrupted", "unknown", "restored", "ended"]
    assert [t.event for t in out] == [live, stable, lost, odd, back, end]
    assert all(t.source == "event" and t.at == t.event.created_at for t in out if t.event)
    assert all(t.session_id == SID and t.channel_id == "ch-1" for t in out)
    assert [t.previous for t in out] == [None, "live", "stable", "interrupted", "unknown", "restored"]
    unknown = out[3]
    assert isinstance(unknown, Unknown)
    assert unknown.raw == "transcoder_hiccup"
    assert isinstance(out[-1], Ended)
    assert out[-1].is_terminal
    assert tracker.ended
    assert tracker.state == "ended"
    assert tracker.feed("live", [ev(7, "stable")], obs(6)) == []
    assert tracker.feed(None, [], obs(7)) == []


def test_raw_values_are_normalised_but_unknown_keeps_the_servers_spelling() -> None:
    tracker = SessionTracker(SID)
    out = tracker.feed(" LIVE ", [ev(1, "Signal Interrupted"), ev(2, "signal-lost"), ev(3, "Brand New Thing")], obs(1))
    assert kinds(out) == ["live", "interrupted", "interrupted", "unknown"]
    assert isinstance(out[-1], Unknown)
    assert out[-1].raw == "Brand New Thing"
    status_out = tracker.feed("Some Odd-Status", [], obs(2))
    assert isinstance(status_out[0], Unknown)
    assert (status_out[0].raw, status_out[0].source) == ("Some Odd-Status", "status")


# -- events: each once, in order ------------------------------------------------------------------------------


def test_burst_shuffled_across_overlapping_pages_yields_each_event_once_in_order() -> None:
    events = [ev(n, "stable") for n in range(150)]
    rng = random.Random(7)
    page1, page2 = events[50:], events[:100]  # newest-first pages that overlap by 50
    delivered = rng.sample(page1, len(page1)) + rng.sample(page2, len(page2))
    out = SessionTracker(SID).feed(None, delivered, obs(1))
    assert [t.event for t in out] == events


def test_repeated_pages_and_resent_old_events_are_not_yielded_again() -> None:
    tracker = SessionTracker(SID)
    first = [ev(n, "stable") for n in range(10)]
    assert len(tracker.feed(None, first + first, obs(1))) == 10
    assert tracker.feed(None, first, obs(2)) == []
    newer = [ev(n, "stable") for n in range(10, 15)]
    out = tracker.feed(None, list(reversed(first + newer)) + newer, obs(3))
    assert [t.event for t in out] == newer


def test_events_sharing_a_timestamp_are_ordered_by_id_and_a_late_one_is_not_lost() -> None:
    tracker = SessionTracker(SID)
    b, a = ev(1, "stable", ms=5, id="b"), ev(2, "live", ms=5, id="a")
    assert [t.event for t in tracker.feed(None, [b, a], obs(1))] == [a, b]
    late = ev(3, "signal_interrupted", ms=5, id="aa")  # same instant, written after the poll
    assert not tracker.is_seen(late)
    assert [t.event for t in tracker.feed(None, [a, late, b], obs(2))] == [late]
    assert tracker.is_seen(late)


class ServerLog:
    """The server's events of one session, read newest-first in pages the way the watcher reads them."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.reads = 0

    def read_unseen(self, tracker: SessionTracker, per_page: int = 100) -> list[Event]:
        newest_first = sorted(self.events, key=lambda e: (e.created_at, e.id), reverse=True)
        read: list[Event] = []
        for start in range(0, len(newest_first), per_page):
            for event in newest_first[start : start + per_page]:
                self.reads += 1
                if tracker.is_older(event):
                    return read
                read.append(event)
        return read


def test_is_older_lets_the_poller_read_a_burst_bigger_than_a_page_and_nothing_older() -> None:
    log, tracker = ServerLog(), SessionTracker(SID)
    log.events += [ev(n, "stable") for n in range(150)]
    assert tracker.watermark is None
    out = tracker.feed("live", log.read_unseen(tracker), obs(1))
    assert [t.event for t in out] == log.events
    assert tracker.watermark == log.events[-1].created_at
    log.events += [ev(n, "stable") for n in range(150, 160)]
    log.reads = 0
    out = tracker.feed("live", log.read_unseen(tracker), obs(2))
    assert [t.event for t in out] == log.events[150:]
    assert log.reads == 12  # the ten new ones, the newest seen one (its instant may hold a late one), one older


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[list[Event], list[list[Event]]]:
    """A growing log (timestamps may tie) and polls that each bring the new events, re-sent old ones, shuffled."""
    n = draw(st.integers(1, 40))
    stamps = sorted(draw(st.lists(st.integers(0, 15), min_size=n, max_size=n)))
    events = sorted((ev(i, "stable", ms=ms) for i, ms in enumerate(stamps)), key=lambda e: (e.created_at, e.id))
    cuts = [*sorted(draw(st.lists(st.integers(0, n), max_size=6))), n]
    polls, done = [], 0
    for cut in cuts:
        resent = draw(st.lists(st.sampled_from(events[: max(cut, 1)]), max_size=8)) if cut else []
        polls.append(draw(st.permutations(events[done:cut] + resent + events[done:cut][:2])))
        done = cut
    return events, polls


@given(deliveries())
@settings(max_examples=200, deadline=None)
def test_any_overlap_duplication_or_order_of_delivery_yields_each_event_once_in_order(
    case: tuple[list[Event], list[list[Event]]],
) -> None:
    events, polls = case
    tracker = SessionTracker(SID)
    out = [t for i, page in enumerate(polls) for t in tracker.feed(None, page, obs(i))]
    assert [t.event for t in out] == events


@given(st.lists(st.tuples(st.integers(0, 4), st.booleans()), min_size=1, max_size=30), st.randoms())
@settings(max_examples=200, deadline=None)
def test_events_written_late_at_the_newest_timestamp_are_each_yielded_once(
    spec: list[tuple[int, bool]], rnd: random.Random
) -> None:
    # Ids are random, so events sharing a timestamp reach the server in any id order.
    ids = rnd.sample(range(10**6), len(spec))
    tracker, log, out = SessionTracker(SID), ServerLog(), []
    for i, (ms, poll_after) in enumerate(sorted(spec)):
        log.events.append(ev(i, "stable", ms=ms, id=f"{ids[i]:06d}"))
        if poll_after:
            out += tracker.feed(None, log.read_unseen(tracker, per_page=3), obs(i))
    out += tracker.feed(None, log.read_unseen(tracker, per_page=3), obs(len(spec)))
    assert sorted(t.event.id for t in out if t.event) == sorted(e.id for e in log.events)
    assert [t.at for t in out] == sorted(t.at for t in out)


# -- status ---------------------------------------------------------------------------------------------------


def test_status_changes_without_events_yield_status_transitions_never_the_same_state_twice() -> None:
    tracker = SessionTracker(SID, channel_id="ch-1")
    statuses = ["live", "live", "stable", "interrupted", "interrupted", "live", "restored", "stopped", "stopped"]
    out = [(i, t) for i, s in enumerate(statuses) for t in tracker.feed(s, [], obs(i))]
    assert [(i, t.kind) for i, t in out] == [(0, "live"), (3, "interrupted"), (5, "live"), (7, "stopped")]
    assert all(t.source == "status" and t.event is None and t.at == obs(i) for i, t in out)
    assert all(t.channel_id == "ch-1" for _, t in out)
    assert tracker.state == "stopped"


def test_a_failed_status_read_changes_nothing() -> None:
    tracker = SessionTracker(SID)
    tracker.feed("live", [], obs(1))
    assert tracker.feed(None, [], obs(2)) == []
    assert tracker.feed("live", [], obs(3)) == []
    assert tracker.state == "live"


def test_an_unknown_status_is_yielded_once_per_change_and_the_way_back_too() -> None:
    tracker = SessionTracker(SID)
    out = run(tracker, [("live", [], obs(1)), ("warming", [], obs(2)), ("Warming", [], obs(3)), ("live", [], obs(4))])
    # Back to live after the unknown status: the user's last word was "warming", so live is news again.
    assert kinds(out) == ["live", "unknown", "live"]
    assert [t.source for t in out] == ["status"] * 3
    assert tracker.state == "live"
    assert tracker.feed("live", [], obs(5)) == []
    assert kinds(tracker.feed("paused", [], obs(6)) + tracker.feed("warming", [], obs(7))) == ["unknown", "unknown"]


def test_status_explained_by_the_polls_events_yields_nothing_extra() -> None:
    tracker = SessionTracker(SID)
    # A session already under way: its history explains the status.
    history = [ev(1, "initialize"), ev(2, "start"), ev(3, "on_publish"), ev(4, "stable")]
    assert kinds(tracker.feed("stable", history, obs(1))) == ["initializing", "started", "live", "stable"]
    # The status leads the event that explains it ...
    assert kinds(tracker.feed("interrupted", [ev(5, "signal_interrupted")], obs(2))) == ["interrupted"]
    # ... or lags behind it.
    assert kinds(tracker.feed("interrupted", [ev(6, "signal_restored")], obs(3))) == ["restored"]
    assert kinds(tracker.feed("live", [], obs(4))) == []
    assert all(t.source == "event" for t in tracker.feed("stopped", [ev(7, "stop")], obs(5)))


def test_a_status_transition_comes_before_the_events_of_its_poll() -> None:
    tracker = SessionTracker(SID)
    tracker.feed("live", [ev(1, "on_publish")], obs(1))
    odd = ev(2, "thumbnail_ready")
    out = tracker.feed("interrupted", [odd], obs(2))
    assert [(t.kind, t.source) for t in out] == [("interrupted", "status"), ("unknown", "event")]
    assert isinstance(out[0], Interrupted)
    assert (out[0].at, out[1].at) == (obs(2), odd.created_at)
    assert out[1].previous == "interrupted"


# -- the terminal status and the final events read ------------------------------------------------------------


def test_terminal_status_waits_for_the_final_read_and_ended_carries_the_servers_event() -> None:
    tracker = SessionTracker(SID)
    tracker.feed("live", [ev(1, "on_publish")], obs(1))
    out = tracker.feed("ended", [ev(2, "stop")], obs(2))
    assert kinds(out) == ["stopped"]
    assert tracker.awaiting_final_events
    assert not tracker.ended
    end = ev(3, "ended")
    final = tracker.feed(None, [end, ev(2, "stop")], obs(3))
    assert kinds(final) == ["ended"]
    assert (final[0].source, final[0].event, final[0].at) == ("event", end, end.created_at)
    assert tracker.ended
    assert not tracker.awaiting_final_events
    assert tracker.feed("ended", [end], obs(4)) == []


def test_terminal_status_without_an_ended_event_ends_from_the_status() -> None:
    tracker = SessionTracker(SID)
    tracker.feed("live", [ev(1, "on_publish")], obs(1))
    assert tracker.feed("ended", [], obs(2)) == []
    assert tracker.awaiting_final_events
    # The final read is final whatever it brings, and the status passed with it does not matter.
    final = tracker.feed("live", [ev(2, "stable")], obs(3))
    assert kinds(final) == ["stable", "ended"]
    assert isinstance(final[-1], Ended)
    assert (final[-1].source, final[-1].event, final[-1].at) == ("status", None, obs(2))
    assert final[-1].previous == "stable"
    assert tracker.ended


def test_a_failed_final_read_still_ends_the_stream() -> None:
    tracker = SessionTracker(SID)
    assert tracker.feed("finished", [], obs(1)) == []
    assert kinds(tracker.feed(None, [], obs(2))) == ["ended"]


def test_terminal_status_with_its_ended_event_in_the_same_poll_ends_at_once() -> None:
    tracker = SessionTracker(SID)
    end = ev(2, "ended")
    out = tracker.feed("ended", [end, ev(1, "stable"), ev(3, "stable")], obs(1))
    assert kinds(out) == ["stable", "ended"]  # nothing after Ended, not even a later event
    assert out[-1].event == end
    assert tracker.ended
    assert not tracker.awaiting_final_events


# -- cursors --------------------------------------------------------------------------------------------------


def scripted_polls() -> list[Poll]:
    """A run exercising status transitions, unknowns, shared timestamps, re-sent pages and the terminal read."""
    e = [
        ev(1, "initialize"),
        ev(2, "start"),
        ev(3, "on_publish", ms=3, id="x-b"),
        ev(4, "stable", ms=3, id="x-a"),
        ev(5, "signal_interrupted"),
        ev(6, "odd_thing"),
        ev(7, "signal_restored"),
        ev(8, "stop"),
        ev(9, "ended"),
    ]
    return [
        ("initializing", [], obs(0)),
        ("starting", [e[1], e[0]], obs(1)),
        ("live", [e[3], e[2], e[1]], obs(2)),
        ("interrupted", [e[2]], obs(3)),
        ("weird", [e[4], e[3], e[4]], obs(4)),
        ("live", [e[5], e[6]], obs(5)),
        (None, [e[6]], obs(6)),
        ("ended", [e[7], e[6]], obs(7)),
        (None, [e[8], e[7]], obs(8)),
        ("ended", [e[8]], obs(9)),
    ]


def assert_resumes_exactly(polls: Sequence[Poll]) -> None:
    tracker = SessionTracker(SID, channel_id="ch-1")
    out: list[tuple[int, Transition]] = []
    between: list[str] = [tracker.cursor]
    for i, (status, events, at) in enumerate(polls):
        out += [(i, t) for t in tracker.feed(status, events, at)]
        between.append(tracker.cursor)
    transitions = [t for _, t in out]
    for k, (poll, t) in enumerate(out):
        # A watcher resumed from a transition's cursor reads that poll again, and the ones after it.
        resumed = SessionTracker(SID, channel_id="ch-1", since=t.cursor)
        assert resumed.ended == isinstance(t, Ended)
        assert run(resumed, polls[poll:]) == transitions[k + 1 :]
    done = 0
    for i, cursor in enumerate(between):
        done += sum(1 for poll, _ in out if poll == i - 1)
        resumed = SessionTracker(SID, channel_id="ch-1", since=cursor)
        assert run(resumed, polls[i:]) == transitions[done:]


def test_resuming_from_any_cursor_yields_exactly_the_rest() -> None:
    polls = scripted_polls()
    out = run(SessionTracker(SID), polls)
    assert [(t.kind, t.source) for t in out] == [
        ("initializing", "status"), ("initializing", "event"), ("started", "event"),
        ("stable", "event"), ("live", "event"),  # one instant: ordered by id
        ("interrupted", "status"), ("unknown", "status"), ("interrupted", "event"),
        ("unknown", "event"), ("restored", "event"), ("stopped", "event"), ("ended", "event"),
    ]  # fmt: skip
    assert_resumes_exactly(polls)


STATUSES = [None, "initializing", "started", "live", "stable", "interrupted", "restored", "stopped", "paused"]
ACTIONS = ["initialize", "start", "on_publish", "stable", "signal_interrupted", "signal_restored", "stop", "x"]


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
    ending = draw(st.sampled_from(["no", "with_status", "in_final_read", "never_written"]))
    if ending != "no":
        end = ev(len(log), "ended", ms=len(log) + 1)
        before = [*log, end] if ending == "with_status" else log
        polls.append(("ended", list(reversed(before[-3:])), obs(100)))
        polls.append((None, ([*log, end] if ending != "never_written" else log)[-3:], obs(101)))
    return polls


def state_of(kind: str) -> str:
    return {"stable": "live", "restored": "live"}.get(kind, kind)


@given(sessions())
@settings(max_examples=200, deadline=None)
def test_random_sessions_keep_the_contract_and_resume_exactly(polls: list[Poll]) -> None:
    out = run(SessionTracker(SID), polls)
    events = [t.event for t in out if t.event]
    assert len({e.id for e in events}) == len(events)
    assert events == sorted(events, key=lambda e: (e.created_at, e.id))
    assert not any(isinstance(t, Ended) for t in out[:-1])
    if polls[-1][1] and polls[-1][1][-1].action == "ended":
        assert isinstance(out[-1], Ended)
        assert out[-1].event is not None
    elif len(polls) > 1 and polls[-2][0] == "ended":
        assert isinstance(out[-1], Ended)
    for a, b in itertools.pairwise(out):
        if a.source == b.source == "status" and "unknown" not in (a.kind, b.kind):
            assert state_of(a.kind) != state_of(b.kind)
    assert [t.previous for t in out] == [None, *kinds(out)][: len(out)]
    assert_resumes_exactly(polls)


def test_a_cursor_restores_previous_and_state() -> None:
    tracker = SessionTracker(SID)
    last = tracker.feed("live", [ev(1, "on_publish"), ev(2, "signal_interrupted")], obs(1))[-1]
    resumed = SessionTracker(SID, since=last.cursor)
    assert resumed.state == "interrupted"
    assert resumed.is_seen(ev(2, "signal_interrupted"))
    nxt = resumed.feed("live", [ev(3, "signal_restored")], obs(2))
    assert isinstance(nxt[0], Restored)
    assert nxt[0].previous == "interrupted"


def test_a_cursor_taken_after_ended_resumes_an_ended_tracker() -> None:
    tracker = SessionTracker(SID)
    end = tracker.feed("ended", [ev(1, "ended")], obs(1))[-1]
    resumed = SessionTracker(SID, since=end.cursor)
    assert resumed.ended
    assert resumed.feed("live", [ev(2, "on_publish")], obs(2)) == []


def test_a_cursor_is_short_urlsafe_text() -> None:
    tracker = SessionTracker(SID)
    cursor = tracker.feed("live", [ev(1, "on_publish")], obs(1))[-1].cursor
    assert len(cursor) < 250
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode()


@pytest.mark.parametrize(
    ("cursor", "message"),
    [
        ("not a cursor!", "not a watch cursor"),
        ("", "not a watch cursor"),
        (_b64(b"\xff\xfe"), "not a watch cursor"),
        (_b64(b'{"hello": "world"}'), "not a watch cursor"),
        (_b64(b'{"v": 1, "s": 42}'), "not a watch cursor"),
        (_b64(msgspec.json.encode({"v": 99, "s": SID})), "version 99"),
        (_b64(msgspec.json.encode({"v": 1, "s": SID, "k": "exploded"})), "unknown kind or state"),
        (_b64(msgspec.json.encode({"v": 1, "s": SID, "i": ["a"]})), "no watermark"),
    ],
)
def test_a_bad_cursor_is_a_clear_value_error(cursor: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SessionTracker(SID, since=cursor)


def test_a_cursor_of_another_session_is_refused() -> None:
    cursor = SessionTracker("other-session").feed("live", [], obs(1))[0].cursor
    with pytest.raises(ValueError, match="belongs to session 'other-session'"):
        SessionTracker(SID, since=cursor)


# -- the kind table -------------------------------------------------------------------------------------------


def test_a_user_extended_table_maps_new_values_and_leaves_the_default_alone() -> None:
    table = DEFAULT_TABLE.extended(actions={"Transcoder-Restarted": "restored"}, statuses={"on air": "live"})
    tracker = SessionTracker(SID, table=table)
    out = tracker.feed("ON AIR", [ev(1, "signal_interrupted")], obs(1))
    out += tracker.feed("on-air", [ev(2, "transcoder_restarted")], obs(2))
    assert [(t.kind, t.source) for t in out] == [("live", "status"), ("interrupted", "event"), ("restored", "event")]
    assert isinstance(out[0], Live)
    assert isinstance(out[2], Restored)
    assert table.kind_for_action("stable") == "stable"  # the defaults are still there
    assert DEFAULT_TABLE.kind_for_action("transcoder_restarted") == "unknown"
    assert KIND_BY_ACTION["stop"] == "stopped"
    assert KIND_BY_STATUS["finished"] == "ended"


def test_a_table_refuses_a_kind_that_does_not_exist() -> None:
    with pytest.raises(ValueError, match="not transition kinds"):
        DEFAULT_TABLE.extended(actions={"resumed": "restord"})
    with pytest.raises(TypeError):
        KIND_BY_STATUS["x"] = "live"  # type: ignore[index]


def test_an_empty_table_makes_everything_unknown() -> None:
    out = SessionTracker(SID, table=KindTable({}, {})).feed("live", [ev(1, "stop")], obs(1))
    assert [(t.kind, t.source) for t in out] == [("unknown", "status"), ("unknown", "event")]
    assert isinstance(out[1], Unknown)
    assert not isinstance(out[1], Stopped)


# -- memory ---------------------------------------------------------------------------------------------------


def test_memory_stays_bounded_over_a_long_session() -> None:
    tracker = SessionTracker(SID)
    events = [ev(n, "stable" if n % 2 else "signal_interrupted") for n in range(100_000)]
    yielded = 0
    for start in range(0, len(events), 100):
        page = events[max(0, start - 20) : start + 100]  # every page overlaps the previous one
        yielded += len(tracker.feed("live", page, obs(start)))
        assert len(tracker._ids_at_watermark) == 1
    assert yielded == len(events)
    assert len(tracker.cursor) < 250


def test_a_burst_sharing_one_timestamp_keeps_memory_bounded_and_yields_nothing_twice() -> None:
    tracker = SessionTracker(SID)
    burst = [ev(n, "stable", ms=1, id=f"id-{n:05d}") for n in range(1_000)]
    out = tracker.feed(None, random.Random(3).sample(burst, len(burst)), obs(1))
    assert [t.event for t in out] == burst
    assert len(tracker._ids_at_watermark) <= 128
    assert len(tracker.cursor) < 8_000
    assert tracker.feed(None, burst, obs(2)) == []
    assert SessionTracker(SID, since=tracker.cursor).feed(None, burst, obs(3)) == []
