"""KindTable: which transition kind a status or an event action means, and how users extend it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from sigma_async.models import Event
from sigma_async.transitions import Live, Restored, Stopped, Unknown
from sigma_async.watch import DEFAULT_TABLE, KIND_BY_ACTION, KIND_BY_STATUS, KindTable, SessionTracker

SID = "s-1"
T0 = datetime(2024, 7, 22, 11, 34, 0, tzinfo=timezone.utc)


def ev(n: int, action: str) -> Event:
    return Event(id=f"ev-{n}", action=action, created_at=T0 + timedelta(milliseconds=n))


def test_a_user_extended_table_maps_new_values_and_leaves_the_default_alone() -> None:
    table = DEFAULT_TABLE.extended(actions={"Transcoder-Restarted": "restored"}, statuses={"on air": "live"})
    tracker = SessionTracker(SID, table=table)
    out = tracker.feed("ON AIR", [ev(1, "signal_interrupted")], T0)
    out += tracker.feed("on-air", [ev(2, "transcoder_restarted")], T0)
    assert [(t.kind, t.source) for t in out] == [
        ("initializing", "status"), ("started", "status"), ("live", "status"), ("interrupted", "event"),
        ("restored", "event"),
    ]  # fmt: skip
    assert isinstance(out[2], Live) and isinstance(out[4], Restored)
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
    out = SessionTracker(SID, table=KindTable({}, {})).feed("live", [ev(1, "stop")], T0)
    # An unknown status has no place in the lifecycle: it comes after the events read with it.
    assert [(t.kind, t.source) for t in out] == [("unknown", "event"), ("unknown", "status")]
    assert isinstance(out[0], Unknown) and not isinstance(out[0], Stopped)
