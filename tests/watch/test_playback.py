"""``playback=True`` on the watchers: the HLS output's health between a session's Live and its Ended."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import anyio
import pytest

from sigma_async import PlaybackResumed, PlaybackStalled, SigmaClient, Transition
from sigma_async.testing import Emulator

FAST = 0.05
STALL = 0.6  # seconds without an advance; the emulator's segments advance every 0.1 s at speed 10
LADDER = ("1080p", "720p", "480p")


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(speed=10, seed=61) as emulator:
        yield emulator


@pytest.fixture
async def client(emu: Emulator) -> AsyncIterator[SigmaClient]:
    async with emu.client() as c:
        yield c


def on_air(emu: Emulator, name: str = "out") -> tuple[str, str]:
    channel = emu.create_channel(name)
    sid = emu.start_channel(channel.id).id
    emu.connect_publisher(channel.id)
    return channel.id, sid


def kinds(got: list[Transition]) -> list[str]:
    return [t.kind for t in got]


async def test_a_stall_and_its_resume_sit_between_live_and_ended(emu: Emulator, client: SigmaClient) -> None:
    cid, sid = on_air(emu)
    got: list[Transition] = []
    with anyio.fail_after(20):
        async for t in client.watch_session(
            sid, channel_id=cid, interval=FAST, playback=True, playback_stall_after=STALL
        ):
            got.append(t)
            if t.kind == "stable":
                emu.stall_playback(cid)  # the API goes on saying all is well
            elif t.kind == "playback_stalled":
                emu.resume_playback(cid)
            elif t.kind == "playback_resumed":
                emu.stop_channel(cid)
    assert kinds(got) == [
        "initializing", "started", "live", "stable", "playback_stalled", "playback_resumed", "stopped", "ended",
    ]  # fmt: skip
    stalled, resumed = got[4], got[5]
    assert isinstance(stalled, PlaybackStalled) and isinstance(resumed, PlaybackResumed)
    assert (stalled.source, stalled.renditions, stalled.reason) == ("playback", LADDER, "stale")
    assert (stalled.id, resumed.id) == (f"{sid}:playback_stalled:1", f"{sid}:playback_resumed:1")
    assert stalled.channel_id == cid and resumed.renditions == LADDER
    assert [t.previous for t in got] == [None, *kinds(got)[:-1]]


async def test_one_failing_rendition_is_named_with_its_reason(emu: Emulator, client: SigmaClient) -> None:
    cid, sid = on_air(emu, "one-bad")
    with anyio.fail_after(20):
        async for t in client.watch_session(
            sid, channel_id=cid, interval=FAST, playback=True, playback_stall_after=STALL
        ):
            if t.kind == "stable":
                emu.fail_playback(cid, "720p", status=404)
            elif isinstance(t, PlaybackStalled):
                assert (t.renditions, t.reason) == (("720p",), "http 404")
                emu.stop_channel(cid)
            elif t.kind == "ended":
                break
            else:
                assert not isinstance(t, PlaybackResumed)


async def test_a_channel_watch_judges_each_session_from_its_live_and_nothing_after_its_end(
    emu: Emulator, client: SigmaClient
) -> None:
    channel = emu.create_channel("series")
    got: list[Transition] = []
    first = emu.start_channel(channel.id).id
    emu.connect_publisher(channel.id)
    second = None
    with anyio.fail_after(20):
        async for t in client.watch_channel(channel.id, interval=FAST, playback=True, playback_stall_after=STALL):
            got.append(t)
            if (t.session_id, t.kind) == (first, "stable"):
                emu.stall_playback(channel.id)
            elif (t.session_id, t.kind) == (first, "playback_stalled"):
                emu.stop_channel(channel.id)  # it ends stalled: no resume, nothing after its Ended
                emu.resume_playback(channel.id)
            elif (t.session_id, t.kind) == (first, "ended"):
                second = emu.start_channel(channel.id).id
                emu.connect_publisher(channel.id)
            elif second is not None and (t.session_id, t.kind) == (second, "stable"):
                polled = len(emu.journal.entries())
                await emu.wait_for(lambda n=polled: len(emu.journal.entries()) > n + 20)  # healthy output a while
                emu.stop_channel(channel.id)
            elif (t.session_id, t.kind) == (second, "ended"):
                break
    assert [t.kind for t in got if t.session_id == first][-2:] == ["playback_stalled", "ended"] or [
        t.kind for t in got if t.session_id == first
    ][-3:] == ["playback_stalled", "stopped", "ended"]
    assert "playback_stalled" not in [t.kind for t in got if t.session_id == second]
    assert not [t for t in got if t.session_id == first and t.kind.startswith("playback") and t.at > got[-1].at]


async def test_wait_for_a_stall(emu: Emulator, client: SigmaClient) -> None:
    cid, sid = on_air(emu, "waited")
    waiter = asyncio.create_task(
        client.wait_for(
            sid, "playback_stalled", timeout=20, channel_id=cid, interval=FAST, playback=True,
            playback_stall_after=STALL,
        )
    )
    await emu.wait_for(lambda: any(e.path.startswith("/manifest/") for e in emu.journal.entries()))  # on air
    emu.stall_playback(cid, "480p")
    stalled = await waiter
    assert isinstance(stalled, PlaybackStalled) and stalled.renditions == ("480p",)


async def test_playback_reads_never_carry_the_vendors_credentials(emu: Emulator, client: SigmaClient) -> None:
    cid, sid = on_air(emu, "private")
    with anyio.fail_after(20):
        async for t in client.watch_session(
            sid, channel_id=cid, interval=FAST, playback=True, playback_stall_after=STALL
        ):
            if t.kind == "stable":
                emu.stall_playback(cid)
            elif t.kind == "playback_stalled":
                break
    outputs = [e for e in emu.journal.entries() if e.path.startswith("/manifest/")]
    assert outputs, "the output was read"
    assert not [e for e in outputs if {"authorization", "x-app-id"} & {h.lower() for h in e.headers}]


async def test_playback_for_a_session_whose_channel_is_unknown_is_a_value_error_at_the_call(
    emu: Emulator, client: SigmaClient
) -> None:
    with pytest.raises(ValueError, match="channel_id"):
        client.watch_session("s-1", playback=True)
    async with client.monitor(interval=FAST, playback=True, stay_open=True) as monitor:
        with pytest.raises(ValueError, match="channel_id"):
            monitor.add_session("s-1")
        monitor.add_session("s-1", channel_id="c-1")  # this is fine

