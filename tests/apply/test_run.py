"""``apply()`` against the emulator: converging, staying still, and never making a channel twice."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from sigma_async import AuthenticationError, SigmaClient
from sigma_async.apply import ApplyReport, DesiredChannel, StateFile, apply, parse_desired
from sigma_async.testing import Emulator, Fault

S3_SECRET = "s3-secret-NEVER-WRITTEN"
CATCHUP = f"""
[defaults.destination_catchup]
access_key = "AK"
secret_key = "{S3_SECRET}"
bucket = "vod"
endpoint = "https://s3.example.com"
region = "hn"
"""


def channels(*specs: tuple[str, bool] | str, extra: str = "") -> list[DesiredChannel]:
    text = "[defaults]\nstop_timeout = 60\n" + extra
    for spec in specs:
        name, running = (spec, False) if isinstance(spec, str) else spec
        text += f'\n[[channel]]\nname = "{name}"\nrunning = {str(running).lower()}\n'
    return parse_desired(text, env={})


def on_server(emu: Emulator) -> Counter[str]:
    return Counter(channel.name for channel in emu.channels.values())


def running(emu: Emulator) -> set[str]:
    return {c.name for c in emu.channels.values() if c.current_session_id is not None}


def writes(emu: Emulator) -> list[str]:
    return [e.route or "" for e in emu.journal.entries() if e.method != "GET"]


def outcome(report: ApplyReport) -> set[tuple[str, str, bool | None]]:
    return {(r.action, r.name, r.ok) for r in report.results}


async def test_converges_and_a_second_run_sends_no_change(emu: Emulator, sigma_client: SigmaClient,
                                                          tmp_path: Path) -> None:  # fmt: skip
    state = tmp_path / "s.json"
    desired = channels(("a", True), "b", ("c", True), "d", ("e", True), "f", extra=CATCHUP)
    report = await apply(sigma_client, desired, state=state)
    assert report.ok and outcome(report) == {("create", n, True) for n in "abcdef"}
    assert on_server(emu) == Counter("abcdef") and running(emu) == {"a", "c", "e"}
    ids = {r.name: r.channel_id for r in report.results}
    assert {n: e.id for n, e in StateFile(state).state.channels.items()} == ids
    assert S3_SECRET not in state.read_text()

    emu.journal.clear()
    again = await apply(sigma_client, desired, state=state)
    assert again.ok and again.results == [] and sorted(again.plan.unchanged) == list("abcdef")
    assert writes(emu) == [] and emu.journal.count("GET /channels/{id}") == 6


async def test_one_rejected_channel_fails_alone_with_the_api_s_message(emu: Emulator, sigma_client: SigmaClient,
                                                                       tmp_path: Path) -> None:  # fmt: skip
    emu.faults.add("POST /channels", Fault(status=400, message="name contains a forbidden word"), times="always",
                   when=lambda request: request.json()["name"] == "bad")  # fmt: skip
    state = tmp_path / "s.json"
    report = await apply(sigma_client, channels("a", "bad", ("c", True)), state=state)
    assert not report.ok and report.in_doubt == []
    (failed,) = [r for r in report.results if not r.ok]
    assert (failed.action, failed.name, failed.channel_id) == ("create", "bad", None)
    assert failed.error == "HTTP 400: name contains a forbidden word (BadRequestError)"
    assert on_server(emu) == Counter("ac") and running(emu) == {"c"}
    assert set(StateFile(state).state.channels) == {"a", "c"}, "a refused create leaves no pending mark"


async def test_a_create_whose_answer_is_lost_is_in_doubt_until_adopted(emu: Emulator, sigma_client: SigmaClient,
                                                                       tmp_path: Path) -> None:  # fmt: skip
    # The server creates the channel, then the connection drops: the client cannot know.
    emu.faults.add("POST /channels", Fault(status=502, after=True), when=lambda r: r.json()["name"] == "b")
    state = tmp_path / "s.json"
    first = await apply(sigma_client, channels("a", "b"), state=state)
    assert first.in_doubt == ["b"] and not first.ok
    (failed,) = [r for r in first.results if not r.ok]
    assert failed.error is not None and failed.error.startswith("in doubt: HTTP 502")
    assert on_server(emu) == Counter("ab")

    emu.journal.clear()
    second = await apply(sigma_client, channels("a", "b"), state=state)
    assert second.in_doubt == ["b"] and outcome(second) == {("in_doubt", "b", False)}
    assert writes(emu) == [], "a create in doubt is never sent again"

    ids = {c.name: c.id for c in emu.channels.values()}
    with pytest.raises(ValueError, match="that channel is named 'a'"):
        await apply(sigma_client, channels("a", "b"), state=state, adopt={"b": ids["a"]})
    adopted = await apply(sigma_client, channels("a", "b"), state=state, adopt={"b": ids["b"]})
    assert adopted.ok and adopted.results == [] and StateFile(state).state.channels["b"].id == ids["b"]
    with pytest.raises(ValueError, match=r"the state has it as channel .* already"):
        await apply(sigma_client, channels("a", "b"), state=state, adopt={"b": ids["b"]})
    assert on_server(emu) == Counter("ab")


async def test_a_create_that_never_arrived_is_created_once_forgotten(emu: Emulator, sigma_client: SigmaClient,
                                                                     tmp_path: Path) -> None:  # fmt: skip
    emu.faults.add("POST /channels", Fault(drop=True), when=lambda r: r.json()["name"] == "b")
    state = tmp_path / "s.json"
    assert (await apply(sigma_client, channels("a", "b"), state=state)).in_doubt == ["b"]
    assert on_server(emu) == Counter("a")  # the console shows no "b"
    with pytest.raises(ValueError, match=r"cannot forget 'a': it is channel .* still in the file"):
        await apply(sigma_client, channels("a", "b"), state=state, forget=["a", "b"])
    with pytest.raises(ValueError, match="cannot forget 'zz': the state has no such name"):
        await apply(sigma_client, channels("a", "b"), state=state, forget=["zz"])
    report = await apply(sigma_client, channels("a", "b"), state=state, forget=["b"])
    assert report.ok and outcome(report) == {("create", "b", True)}
    assert on_server(emu) == Counter("ab")


async def test_a_channel_deleted_in_the_console_is_created_again(emu: Emulator, sigma_client: SigmaClient,
                                                                 tmp_path: Path) -> None:  # fmt: skip
    state = tmp_path / "s.json"
    first = await apply(sigma_client, channels(("a", True), "b"), state=state)
    old = {r.name: r.channel_id for r in first.results}
    assert old["a"] is not None
    emu.delete_channel(old["a"])
    report = await apply(sigma_client, channels(("a", True), "b"), state=state)
    assert outcome(report) == {("create", "a", True)}
    assert report.results[0].channel_id not in (None, old["a"])
    assert on_server(emu) == Counter("ab") and running(emu) == {"a"}


async def test_prune_deletes_what_left_the_file_stopping_a_running_one_first(
    emu: Emulator, sigma_client: SigmaClient, tmp_path: Path
) -> None:
    state = tmp_path / "s.json"
    await apply(sigma_client, channels("a", ("b", True), "c"), state=state)
    kept = await apply(sigma_client, channels("a"), state=state)
    assert kept.ok and kept.plan.kept == ["b", "c"] and on_server(emu) == Counter("abc")
    emu.journal.clear()
    pruned = await apply(sigma_client, channels("a"), state=state, prune=True)
    assert pruned.ok and outcome(pruned) == {("delete", "b", True), ("delete", "c", True)}
    assert on_server(emu) == Counter("a") and set(StateFile(state).state.channels) == {"a"}
    sent = [e.path for e in emu.journal.entries() if e.method != "GET"]
    (stop,) = [p for p in sent if p.endswith("/stop")]
    assert len(sent) == 3 and sent.index(stop) < sent.index(stop.removesuffix("/stop")), "stopped, then deleted"


async def test_a_changed_spec_is_replaced_only_when_asked(emu: Emulator, sigma_client: SigmaClient,
                                                          tmp_path: Path) -> None:  # fmt: skip
    state = tmp_path / "s.json"
    first = await apply(sigma_client, channels(("a", True)), state=state)
    old_id = first.results[0].channel_id
    changed = parse_desired('[[channel]]\nname = "a"\nrunning = true\nstop_timeout = 90\n', env={})
    held = await apply(sigma_client, changed, state=state)
    assert not held.ok and outcome(held) == {("replace", "a", False)} and on_server(emu) == Counter("a")
    replaced = await apply(sigma_client, changed, state=state, replace=True)
    assert replaced.ok and outcome(replaced) == {("replace", "a", True)}
    new_id = replaced.results[0].channel_id
    assert new_id != old_id and set(emu.channels) == {new_id}
    assert emu.channels[new_id].spec.stop_timeout == 90 and running(emu) == {"a"}
    assert (await apply(sigma_client, changed, state=state)).results == []


async def test_in_flight_requests_stay_within_the_concurrency(emu: Emulator, sigma_client: SigmaClient,
                                                              tmp_path: Path) -> None:  # fmt: skip
    emu.faults.add("*", Fault(latency=0.01), times="always")
    desired = channels(*[(f"c{i}", i % 2 == 0) for i in range(24)])
    report = await apply(sigma_client, desired, state=tmp_path / "s.json", concurrency=3)
    assert report.ok and len(on_server(emu)) == 24
    assert emu.journal.max_in_flight == 3


async def test_wrong_credentials_stop_the_run_and_nothing_is_left_pending(emu: Emulator, tmp_path: Path) -> None:
    state = tmp_path / "s.json"
    async with emu.client() as good:
        await apply(good, channels("a"), state=state)
    async with SigmaClient(username=emu.username, secret_key="wrong", app_id=emu.app_id, base_url=emu.url) as bad:
        with pytest.raises(AuthenticationError):
            await apply(bad, channels("a", "b"), state=state)
        fresh = await apply(bad, channels("x", "y", "z"), state=tmp_path / "fresh.json", concurrency=1)
    assert {r.error for r in fresh.results} == {"HTTP 401: Invalid credentials (AuthenticationError)"}
    assert emu.journal.count("POST /channels") == 2, "the first 401 stops the run"
    assert StateFile(tmp_path / "fresh.json").state.channels == {}


async def test_a_dry_run_reads_and_writes_nothing(emu: Emulator, sigma_client: SigmaClient, tmp_path: Path) -> None:
    state = tmp_path / "s.json"
    await apply(sigma_client, channels("a"), state=state)
    before = state.read_bytes()
    emu.journal.clear()
    report = await apply(sigma_client, channels(("a", True), "b"), state=state, dry_run=True)
    assert outcome(report) == {("start", "a", None), ("create", "b", None)} and report.ok
    assert writes(emu) == [] and state.read_bytes() == before
