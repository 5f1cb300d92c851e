"""Bulk calls against the emulator: the concurrency bound, input order, per-item failures, cancellation, pacing."""

from __future__ import annotations

import asyncio

import pytest

from sigma_async import (
    AuthenticationError,
    Channel,
    ChannelCreate,
    NotFoundError,
    OutcomeUnknownError,
    RetryPolicy,
    SigmaClient,
    SigmaError,
    UnprocessableEntityError,
)
from sigma_async.bulk import run_bounded
from sigma_async.testing import Emulator, Fault


@pytest.fixture
def client(sigma_client: SigmaClient) -> SigmaClient:
    return sigma_client


def specs(count: int, prefix: str = "bulk") -> list[ChannelCreate]:
    return [ChannelCreate(name=f"{prefix}-{i:03d}") for i in range(count)]


def slow_creates(emu: Emulator, seconds: float = 0.01) -> None:
    """Every create answers after ``seconds``, so that requests overlap and a concurrency bound is reached."""
    emu.faults.add("POST /channels", Fault(latency=seconds), probability=1.0)


async def test_create_many_stays_within_its_bound_and_keeps_input_order(emu: Emulator, client: SigmaClient) -> None:
    slow_creates(emu)
    progress: list[tuple[int, int]] = []
    wanted = specs(200)

    results = await client.channels.create_many(
        wanted, concurrency=8, on_progress=lambda done, total: progress.append((done, total))
    )

    assert emu.journal.max_in_flight == 8  # reached, never passed
    assert emu.journal.count("POST /channels") == 200
    assert all(isinstance(r, Channel) for r in results)
    assert [r.name for r in results if isinstance(r, Channel)] == [s.name for s in wanted]
    assert {r.id for r in results if isinstance(r, Channel)} == set(emu.channels)
    assert progress == [(n, 200) for n in range(1, 201)]


async def test_a_rejected_item_fails_in_its_own_slot_and_the_rest_are_created(
    emu: Emulator, client: SigmaClient
) -> None:
    slow_creates(emu, 0.002)
    settled: dict[int, object] = {}

    def arm_rejection(done: int, total: int) -> None:
        # Mid-run, the server refuses the next create it receives, whichever that is.
        if done == 50:
            emu.faults.clear("POST /channels")  # rules fire in the order added: the rejection goes first
            emu.faults.add("POST /channels", Fault(status=422, message="name already used"))
            slow_creates(emu, 0.002)

    wanted = specs(120)
    results = await client.channels.create_many(
        wanted, concurrency=6, on_progress=arm_rejection, on_result=settled.__setitem__
    )

    failures = [(i, r) for i, r in enumerate(results) if isinstance(r, SigmaError)]
    assert len(failures) == 1
    index, error = failures[0]
    assert isinstance(error, UnprocessableEntityError)
    assert error.status_code == 422 and "name already used" in str(error)
    rejected = [e for e in emu.journal.entries("POST /channels") if e.status == 422]
    assert len(rejected) == 1 and rejected[0].json()["name"] == wanted[index].name  # the slot of that very spec
    assert emu.journal.count("POST /channels") == 120  # a 422 is not retried
    for i, result in enumerate(results):
        if i != index:
            assert isinstance(result, Channel) and result.name == wanted[i].name
    assert len(emu.channels) == 119
    assert settled == dict(enumerate(results))


async def test_cancelling_reports_every_item_that_may_have_reached_the_server(
    emu: Emulator, client: SigmaClient
) -> None:
    slow_creates(emu)
    wanted = specs(200)
    reported: dict[int, object] = {}
    enough = asyncio.Event()

    def record(index: int, result: object) -> None:
        assert index not in reported  # each item reported once
        reported[index] = result
        if len(reported) >= 40:
            enough.set()

    task = asyncio.create_task(client.channels.create_many(wanted, concurrency=8, on_result=record))
    await asyncio.wait_for(enough.wait(), timeout=10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    reported_at_cancel = dict(reported)
    await emu.wait_for(lambda: emu.journal.in_flight == 0, timeout=5)

    created = {i: r for i, r in reported_at_cancel.items() if isinstance(r, Channel)}
    unknown = {i for i, r in reported_at_cancel.items() if isinstance(r, OutcomeUnknownError)}
    assert set(reported_at_cancel) == set(created) | unknown and len(reported_at_cancel) < 200
    assert 0 < len(unknown) <= 8  # what was in flight at the cancel
    # Every channel that exists was reported: as created, or as an item whose outcome is unknown.
    index_of = {spec.name: i for i, spec in enumerate(wanted)}
    on_server = {index_of[c.name] for c in emu.channels.values()}
    assert on_server <= set(created) | unknown
    assert {c.id for c in created.values()} <= set(emu.channels)
    assert reported == reported_at_cancel  # nothing settles after the cancel


async def test_bad_credentials_stop_the_run_at_the_first_refusal(emu: Emulator) -> None:
    slow_creates(emu, 0.005)
    progress: list[int] = []
    async with SigmaClient(
        username=emu.username, secret_key="wrong", app_id=emu.app_id, base_url=emu.url
    ) as client:
        results = await client.channels.create_many(
            specs(100), concurrency=4, on_progress=lambda done, total: progress.append(done)
        )
    assert all(isinstance(r, AuthenticationError) for r in results)
    assert emu.journal.count("POST /channels") <= 4  # the first wave; nothing sent after the first 401
    assert progress == list(range(1, 101))  # every slot settled and reported
    assert emu.channels == {}


async def test_one_retry_after_holds_back_the_whole_bulk(emu: Emulator) -> None:
    pause = 0.5
    first_wave_latency = 0.15
    emu.faults.add("POST /channels", Fault(status=429, retry_after=pause))  # the first create is turned away
    emu.faults.add("POST /channels", Fault(latency=first_wave_latency), probability=1.0)

    async with emu.client(retry=RetryPolicy(max_retries=2)) as client:
        results = await client.channels.create_many(specs(12), concurrency=4)

    assert all(isinstance(r, Channel) for r in results)
    posts = emu.journal.entries("POST /channels")
    assert len(posts) == 13  # the refused create was retried once
    refused = next(e for e in posts if e.status == 429)
    assert refused.finished is not None
    # The first wave was already sent when the 429 came back; every request sent after it waited for the pause,
    # even those of workers that never saw a 429 themselves.
    cutoff = refused.finished + first_wave_latency / 2
    first_wave = [e for e in posts if e is not refused and e.started < cutoff]
    held = [e for e in posts if e is not refused and e.started >= cutoff]
    assert len(first_wave) <= 3
    assert len(held) == 13 - 1 - len(first_wave)
    assert all(e.started >= refused.finished + pause for e in held)


async def test_rate_limit_spaces_request_starts(emu: Emulator, client: SigmaClient) -> None:
    rate = 40.0  # per second: one start every 25 ms
    await client.channels.create_many(specs(20), concurrency=8, rate_limit=rate)

    starts = sorted(e.started for e in emu.journal.entries("POST /channels"))
    assert len(starts) == 20
    tolerance = 0.015  # the first request's own trip to the server
    for i, started in enumerate(starts):
        assert started - starts[0] >= i / rate - tolerance, (i, started - starts[0])
    # Never more than the cap in any one-second window (20 items at 40/s fit in half a second).
    assert starts[-1] - starts[0] >= 19 / rate - tolerance


async def test_start_stop_delete_many_report_an_unknown_id_in_its_slot(emu: Emulator, client: SigmaClient) -> None:
    ids = [emu.create_channel(f"c{i}").id for i in range(5)]
    mixed = [*ids[:2], "no-such-channel", *ids[2:]]

    started = await client.channels.start_many(mixed, concurrency=3)
    assert isinstance(started[2], NotFoundError)
    assert [r for i, r in enumerate(started) if i != 2] == [None] * 5
    assert all(emu.channels[cid].current_session_id for cid in ids)

    stopped = await client.channels.stop_many(mixed, concurrency=3)
    assert isinstance(stopped[2], NotFoundError)
    assert [r for i, r in enumerate(stopped) if i != 2] == [None] * 5
    assert all(emu.channels[cid].current_session_id is None for cid in ids)
    assert {s.status for s in emu.sessions.values()} == {"ended"}

    deleted = await client.channels.delete_many(mixed, concurrency=3)
    assert isinstance(deleted[2], NotFoundError) and "no-such-channel" in str(deleted[2])
    assert [r for i, r in enumerate(deleted) if i != 2] == [None] * 5
    assert emu.channels == {}


async def test_bad_input_is_refused_before_anything_is_sent(emu: Emulator, client: SigmaClient) -> None:
    with pytest.raises(TypeError):
        await client.channels.create_many([ChannelCreate(name="ok"), {"name": "not a spec"}])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        await client.channels.delete_many(["fine", "not/a/plain/id"])
    with pytest.raises(ValueError):
        await client.channels.create_many(specs(3), concurrency=0)
    with pytest.raises(ValueError):
        await client.channels.start_many(["a"], rate_limit=0)
    assert len(emu.journal) == 0
    assert await client.channels.create_many([]) == []


async def test_a_bug_in_an_item_propagates_as_itself_and_stops_the_rest() -> None:
    started: list[int] = []
    never_done = asyncio.Event()

    async def item(i: int) -> int:
        started.append(i)
        if i == 1:
            raise KeyError("bug")
        await never_done.wait()  # would hang for ever if the bug did not cancel its siblings
        return i

    with pytest.raises(KeyError, match="bug"):
        await asyncio.wait_for(run_bounded([lambda i=i: item(i) for i in range(10)], concurrency=3), timeout=5)
    assert sorted(started) == [0, 1, 2]
