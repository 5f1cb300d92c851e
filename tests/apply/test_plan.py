"""The planner and the spec digest: pure functions of the file, the state and what the server said. No sockets."""

from __future__ import annotations

import dataclasses

from sigma_async import ChannelCreate, S3Destination
from sigma_async.apply import Action, ApplyState, DesiredChannel, Entry, Gone, Seen, Unreadable, parse_desired, plan
from sigma_async.apply._digest import spec_digest

SALT = "00" * 16


def desired(name: str, *, running: bool = False, **spec: object) -> DesiredChannel:
    return DesiredChannel(name, ChannelCreate(name=name, **spec), running)  # type: ignore[arg-type]


def state_of(*channels: DesiredChannel, pending: tuple[str, ...] = ()) -> ApplyState:
    state = ApplyState(salt=SALT)
    for i, channel in enumerate(channels):
        state.channels[channel.name] = Entry(id=f"id-{i}", spec=spec_digest(channel, SALT))
    for name in pending:
        state.channels[name] = Entry(spec="sha256:x", pending="2024-07-22T11:33:50Z")
    return state


def kinds(actions: list[Action]) -> list[tuple[str, str]]:
    return [(a.kind, a.name) for a in actions]


def test_what_the_state_does_not_have_is_created_and_started_if_it_should_run() -> None:
    the_plan = plan([desired("a", running=True), desired("b")], ApplyState(salt=SALT), {})
    assert kinds(the_plan.actions) == [("create", "a"), ("create", "b")]
    assert [a.start_after for a in the_plan.actions] == [True, False]
    assert the_plan.actions[0].spec == spec_digest(desired("a"), SALT) and the_plan.held == []


def test_a_channel_as_the_file_says_needs_nothing_and_running_follows_the_server() -> None:
    a, b, c, d = desired("a", running=True), desired("b"), desired("c", running=True), desired("d")
    observed = {"a": Seen(running=True), "b": Seen(running=False), "c": Seen(running=False), "d": Seen(running=True)}
    the_plan = plan([a, b, c, d], state_of(a, b, c, d), observed)
    assert kinds(the_plan.actions) == [("start", "c"), ("stop", "d")]
    assert [a.channel_id for a in the_plan.actions] == ["id-2", "id-3"]
    assert the_plan.unchanged == ["a", "b"]


def test_a_channel_deleted_behind_apply_s_back_is_created_again() -> None:
    a = desired("a", running=True)
    (action,) = plan([a], state_of(a), {"a": Gone()}).actions
    assert (action.kind, action.start_after, action.reason) == ("create", True, "deleted outside apply: created again")


def test_a_pending_create_is_in_doubt_and_never_planned_again_in_the_file_or_not() -> None:
    the_plan = plan([desired("a")], state_of(pending=("a", "gone-from-file")), {})
    assert kinds(the_plan.actions) == [("in_doubt", "a"), ("in_doubt", "gone-from-file")]
    assert the_plan.runnable == []
    assert "--forget a" in (the_plan.actions[0].held or "") and "--adopt a=CHANNEL_ID" in the_plan.actions[0].reason
    assert "no longer in the file" in (the_plan.actions[1].held or "")


def test_a_channel_dropped_from_the_file_is_kept_unless_pruned_and_then_stopped_first_if_running() -> None:
    a, b, c = desired("a"), desired("b"), desired("c")
    state = state_of(a, b, c)
    assert plan([a], state, {"a": Seen(False)}).kept == ["b", "c"]
    assert plan([a], state, {"a": Seen(False)}).actions == []
    pruned = plan([a], state, {"a": Seen(False), "b": Seen(running=True), "c": Gone()}, prune=True)
    assert kinds(pruned.actions) == [("delete", "b"), ("delete", "c")]
    assert [(x.stop_first, x.channel_id) for x in pruned.actions] == [(True, "id-1"), (False, "id-2")]
    assert pruned.kept == []


def test_a_changed_spec_is_held_without_replace_while_running_is_still_brought_in_line() -> None:
    old = desired("a", stop_timeout=30)
    new = desired("a", running=True, stop_timeout=60)
    held = plan([new], state_of(old), {"a": Seen(running=False)})
    assert kinds(held.actions) == [("replace", "a"), ("start", "a")]
    assert held.actions[0].held and "--replace" in held.actions[0].held and held.actions[1].runs
    replaced = plan([new], state_of(old), {"a": Seen(running=True)}, replace=True)
    (action,) = replaced.actions
    assert (action.kind, action.runs, action.stop_first, action.start_after) == ("replace", True, True, True)
    assert "new stream key and URLs" in action.reason


def test_a_channel_that_cannot_be_read_is_reported_not_guessed_at() -> None:
    a, b = desired("a"), desired("b")
    the_plan = plan([a, b], state_of(a, b), {"a": Unreadable("HTTP 503: busy (ServerError)")})
    assert kinds(the_plan.actions) == [("read", "a"), ("read", "b")]  # b was not read at all
    assert [x.held for x in the_plan.actions] == ["HTTP 503: busy (ServerError)", "not read"]


# -- the digest ------------------------------------------------------------------------------------------------

S3 = {"access_key": "AK", "bucket": "vod", "endpoint": "https://s3.example.com", "region": "hn"}


def with_secret(secret: str) -> DesiredChannel:
    channel = desired("a", destination_catchup=S3Destination(secret_key=secret, **S3))
    return dataclasses.replace(channel, secrets=frozenset({secret}))


def test_the_digest_follows_what_would_be_sent_and_nothing_else() -> None:
    assert spec_digest(desired("a"), SALT) == spec_digest(desired("a", running=True), SALT)
    assert spec_digest(desired("a"), SALT) == spec_digest(desired("a", stop_timeout=30), SALT)  # the default
    assert spec_digest(desired("a"), SALT) != spec_digest(desired("a", stop_timeout=31), SALT)
    assert spec_digest(desired("a"), SALT) != spec_digest(desired("b"), SALT)
    assert spec_digest(desired("a"), SALT).startswith("sha256:")


def test_the_digest_changes_with_a_secret_but_holds_it_only_through_salted_scrypt() -> None:
    first, again, rotated = with_secret("s3-secret-one"), with_secret("s3-secret-one"), with_secret("s3-secret-two")
    assert spec_digest(first, SALT) == spec_digest(again, SALT)
    assert spec_digest(first, SALT) != spec_digest(rotated, SALT)
    # Another state's salt gives another digest: nothing computed for one state serves against another.
    assert spec_digest(first, SALT) != spec_digest(first, "11" * 16)
    # A plain hash of the body would let a guess be checked at hash speed; this one is not that hash.
    plain = dataclasses.replace(first, secrets=frozenset())
    assert spec_digest(first, SALT) != spec_digest(plain, SALT)


def test_values_from_the_environment_are_secrets_wherever_they_are() -> None:
    text = '[[channel]]\nname = "a"\ndescription = "key ${TOKEN}"\n'
    (one,) = parse_desired(text, env={"TOKEN": "t1"})
    (two,) = parse_desired(text, env={"TOKEN": "t2"})
    assert one.secrets == frozenset({"key t1"})
    assert spec_digest(one, SALT) != spec_digest(two, SALT)
