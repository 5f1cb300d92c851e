"""Transition kinds on the wire: every kind survives ``msgspec.json.encode`` and ``decode_transition``."""

from __future__ import annotations

from datetime import datetime, timezone

import msgspec
import pytest

from sigma_async import AnyTransition, PlaybackResumed, PlaybackStalled, Transition, decode_transition
from sigma_async.transitions import PLAYBACK_TYPES, TRANSITION_TYPES, Unknown, playback_transition_id

AT = datetime(2024, 7, 22, 11, 34, 20, tzinfo=timezone.utc)


def every_kind() -> list[Transition]:
    common = {"session_id": "s1", "channel_id": "c1", "at": AT, "cursor": "k", "id": "s1/x"}
    made: list[Transition] = [cls(source="status", **common) for cls in TRANSITION_TYPES.values()]
    made.append(Unknown(source="event", raw="transcoder_on_fire", **common))
    made.append(PlaybackStalled(renditions=("720p", "480p"), reason="stale, http 404", previous="live", **common))
    made.append(PlaybackResumed(renditions=("720p", "480p"), previous="playback_stalled", **common))
    return made


@pytest.mark.parametrize("transition", every_kind(), ids=lambda t: t.kind)
def test_every_kind_round_trips_through_json(transition: Transition) -> None:
    wire = msgspec.json.encode(transition)
    assert msgspec.json.decode(wire)["kind"] == transition.kind
    assert decode_transition(wire) == transition


def test_the_union_holds_every_kind() -> None:
    kinds = {t.kind for t in every_kind()}
    assert kinds == {*TRANSITION_TYPES, "unknown", "playback_stalled", "playback_resumed"}
    assert {cls.kind for cls in AnyTransition.__args__} == kinds


def test_playback_kinds_come_from_the_output_and_say_which_renditions() -> None:
    stalled = PlaybackStalled(session_id="s1", at=AT, renditions=("720p",), reason="stale")
    assert stalled.source == "playback" and stalled.kind == "playback_stalled" and not stalled.is_terminal
    body = msgspec.json.decode(msgspec.json.encode(stalled))
    assert body["source"] == "playback" and body["renditions"] == ["720p"] and body["reason"] == "stale"
    assert PlaybackResumed(session_id="s1", at=AT, renditions=("720p",)).reason == "advancing"
    assert set(PLAYBACK_TYPES) == {"playback_stalled", "playback_resumed"}
    assert not set(PLAYBACK_TYPES) & set(TRANSITION_TYPES)  # no status or event action maps to them


def test_a_playback_kind_from_another_source_is_refused_on_the_way_in() -> None:
    forged = b'{"kind":"playback_stalled","session_id":"s","source":"status","at":"2024-07-22T11:34:20Z",' \
             b'"renditions":[],"reason":"stale"}'
    with pytest.raises(msgspec.ValidationError):
        decode_transition(forged)


def test_playback_ids_name_the_session_the_kind_and_the_count() -> None:
    assert playback_transition_id("5017085c", "playback_stalled", 2) == "5017085c:playback_stalled:2"
    assert playback_transition_id("5017085c", "playback_resumed", 1) == "5017085c:playback_resumed:1"
    with pytest.raises(ValueError):
        playback_transition_id("s", "stable", 1)
    with pytest.raises(ValueError):
        playback_transition_id("s", "playback_stalled", 0)
