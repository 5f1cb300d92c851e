"""The emulator's HLS output: served at each channel's liveStreamUrl, moved by its clock, sessions and controls."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from sigma_async import SigmaClient
from sigma_async._transport import PublicReader
from sigma_async.playback import PlaybackDecision, PlaybackWatch, Prober
from sigma_async.testing import Emulator, Fault

LADDER = ["1080p", "720p", "480p"]


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(manual_clock=True, seed=1) as running:
        yield running


@pytest.fixture
async def client(emu: Emulator) -> AsyncIterator[SigmaClient]:
    async with emu.client() as c:
        yield c


def on_air(emu: Emulator) -> str:
    channel = emu.create_channel("news")
    emu.start_channel(channel.id)
    emu.connect_publisher(channel.id)
    return channel.id


async def sequences(client: SigmaClient, channel_id: str) -> dict[str, int | None]:
    report = await client.playback.probe(channel_id)
    return {r.name: r.media_sequence for r in report.renditions}


async def test_nothing_is_served_before_a_publisher_then_three_renditions_at_the_live_stream_url(
    emu: Emulator, client: SigmaClient
) -> None:
    channel = emu.create_channel("news")
    assert channel.live_stream_url == f"{emu.url}/manifest/{channel.id}/master.m3u8"
    report = await client.playback.probe(channel.id)
    assert (report.state, report.error) == ("unreachable", "HTTP 404")
    emu.start_channel(channel.id)
    emu.connect_publisher(channel.id)
    emu.clock.advance(10.2)
    report = await client.playback.probe(channel.id)
    assert report.state == "playing" and report.url == channel.live_stream_url
    assert [(r.name, r.resolution, r.target_duration, r.segments, r.media_sequence, r.error)
            for r in report.renditions] == [
        ("1080p", "1920x1080", 1.0, 6, 4, None), ("720p", "1280x720", 1.0, 6, 4, None),
        ("480p", "854x480", 1.0, 6, 4, None),
    ]  # fmt: skip
    assert report.renditions[1].url == f"{emu.url}/manifest/{channel.id}/720p/index.m3u8"
    assert report.renditions[0].bandwidth == 5_500_000
    assert all(r.age == 0.0 for r in report.renditions)  # Last-Modified and Date on the emulator's clock


async def test_the_output_advances_with_the_clock_only_while_the_signal_is_good(
    emu: Emulator, client: SigmaClient
) -> None:
    cid = on_air(emu)
    emu.clock.advance(20)
    assert await sequences(client, cid) == dict.fromkeys(LADDER, 14)
    emu.interrupt_signal(cid)
    emu.clock.advance(5)
    assert await sequences(client, cid) == dict.fromkeys(LADDER, 14)  # frozen while interrupted
    report = await client.playback.probe(cid)
    assert report.state == "stalled" and all(r.age == 4.0 for r in report.renditions)  # at least 4 s: whole seconds
    emu.restore_signal(cid)
    emu.clock.advance(3)
    assert await sequences(client, cid) == dict.fromkeys(LADDER, 17)
    emu.disconnect_publisher(cid)
    emu.clock.advance(2)
    assert await sequences(client, cid) == dict.fromkeys(LADDER, 17)  # no publisher: frozen


async def test_the_end_of_a_session_ends_the_playlists_and_the_next_session_starts_from_zero(
    emu: Emulator, client: SigmaClient
) -> None:
    cid = on_air(emu)
    emu.clock.advance(30)
    emu.stop_channel(cid)
    emu.clock.advance(30)
    report = await client.playback.probe(cid)
    assert report.state == "ended" and {r.state for r in report.renditions} == {"ended"}
    assert await sequences(client, cid) == dict.fromkeys(LADDER, 24)
    emu.start_channel(cid)
    assert (await client.playback.probe(cid)).state == "ended"  # the old output until the new one publishes
    emu.connect_publisher(cid)
    emu.clock.advance(2)
    report = await client.playback.probe(cid)
    assert report.state == "playing" and [(r.media_sequence, r.segments) for r in report.renditions] == [(0, 2)] * 3


async def test_a_session_that_times_out_ends_its_output_too(emu: Emulator, client: SigmaClient) -> None:
    cid = on_air(emu)
    emu.clock.advance(5)
    emu.disconnect_publisher(cid)
    emu.clock.advance(emu.channels[cid].stop_timeout + 1)
    assert (await client.playback.probe(cid)).state == "ended"


async def test_stall_fail_and_resume_in_python(emu: Emulator, client: SigmaClient) -> None:
    cid = on_air(emu)
    emu.clock.advance(10)
    emu.stall_playback(cid, "720p")
    emu.clock.advance(5)
    report = await client.playback.probe(cid)
    assert report.state == "stalled" and report.stalled == ["720p"]
    assert await sequences(client, cid) == {"1080p": 9, "720p": 4, "480p": 9}
    emu.fail_playback(cid, "480p", status=503)
    report = await client.playback.probe(cid)
    assert report.state == "degraded" and [r.error for r in report.renditions] == [None, None, "HTTP 503"]
    emu.fail_playback(cid, "master")
    assert (await client.playback.probe(cid)).error == "HTTP 404"
    emu.resume_playback(cid)
    emu.clock.advance(1)
    assert await sequences(client, cid) == {"1080p": 10, "720p": 5, "480p": 10}  # 720p lost the 5 s it stood
    emu.stall_playback(cid)
    emu.clock.advance(4)
    assert await sequences(client, cid) == {"1080p": 10, "720p": 5, "480p": 10}
    with pytest.raises(Exception, match="no rendition"):
        emu.stall_playback(cid, "4k")
    with pytest.raises(Exception, match="not found"):
        emu.fail_playback("no-such-channel", "720p")


async def test_the_control_routes_need_the_credentials_and_answer_the_outputs_state(emu: Emulator) -> None:
    cid = on_air(emu)
    emu.clock.advance(8)
    base = f"{emu.url}/_emulator/channels/{cid}/playback"
    auth = {"Authorization": emu.credentials.authorization, "X-App-Id": emu.app_id}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/stall") as refused:
            assert refused.status == 401
        async with http.post(f"{base}/stall", params={"rendition": "720p"}, headers=auth) as resp:
            body = await resp.json()
            assert resp.status == 200 and body["sessionId"] == emu.channels[cid].current_session_id
            assert [(r["name"], r["stalled"]) for r in body["renditions"]] == [
                ("1080p", False), ("720p", True), ("480p", False),
            ]  # fmt: skip
        async with http.post(f"{base}/fail", params={"rendition": "480p", "status": "502"}, headers=auth) as resp:
            assert (await resp.json())["renditions"][2]["failing"] == 502
        async with http.post(f"{base}/fail", headers=auth) as resp:
            assert resp.status == 400
        async with http.post(f"{base}/fail", params={"rendition": "4k"}, headers=auth) as resp:
            assert resp.status == 404
        async with http.get(f"{emu.url}/manifest/{cid}/480p/index.m3u8") as resp:
            assert resp.status == 502
        async with http.post(f"{base}/resume", headers=auth) as resp:
            state = await resp.json()
            assert not any(r["stalled"] or r["failing"] for r in state["renditions"])
        async with http.post(f"{emu.url}/_emulator/channels/nope/playback/resume", headers=auth) as resp:
            assert resp.status == 404


async def test_the_output_is_a_cdn_no_credentials_and_no_api_faults_or_throttling(
    emu: Emulator, client: SigmaClient
) -> None:
    cid = on_air(emu)
    emu.clock.advance(5)
    emu.faults.add("*", Fault(status=500), times="always")
    emu.throttle(0.001, burst=1)
    async with aiohttp.ClientSession() as http:
        for _ in range(5):
            async with http.get(f"{emu.url}/manifest/{cid}/master.m3u8") as resp:
                assert resp.status == 200 and resp.content_type == "application/vnd.apple.mpegurl"
    assert (await client.playback.probe(emu.channels[cid].live_stream_url)).state == "playing"


# -- the judge over the emulator's output, on its clock --------------------------------------------------------


async def drive(emu: Emulator, follower: PlaybackWatch, seconds: float) -> list[PlaybackDecision]:
    """Step the follower for ``seconds`` of emulated time, moving the clock to each next read."""
    end = emu.clock.elapsed() + seconds
    made: list[PlaybackDecision] = []
    while emu.clock.elapsed() < end:
        made += await follower.step()
        emu.clock.advance(max(0.0, min(follower.next_due(), end) - emu.clock.elapsed()) or 0.001)
    return made


@pytest.fixture
async def prober(emu: Emulator) -> AsyncIterator[Prober]:
    reader = PublicReader()
    yield Prober(reader, clock=emu.clock.elapsed)
    await reader.aclose()


async def test_a_stalled_rendition_is_reported_within_the_threshold_plus_one_read_and_resumes(
    emu: Emulator, prober: Prober
) -> None:
    cid = on_air(emu)
    emu.clock.advance(5)
    follower = prober.follow(emu.channels[cid].live_stream_url, interval=1.0)
    assert await drive(emu, follower, 10) == []
    emu.stall_playback(cid, "720p")
    frozen_at = emu.clock.elapsed()
    [stall] = await drive(emu, follower, 10)
    assert (stall.kind, stall.renditions, stall.reason) == ("stalled", ("720p",), "stale")
    assert 3.0 <= stall.at - frozen_at <= 3.0 + 1.0 + 1.0  # the threshold, the read that saw the last change, one read
    emu.resume_playback(cid)
    thawed_at = emu.clock.elapsed()
    [resume] = await drive(emu, follower, 5)
    assert (resume.kind, resume.renditions) == ("resumed", ("720p",)) and resume.at - thawed_at <= 2.0


async def test_an_interrupted_signal_stalls_every_rendition_and_the_end_is_no_stall(
    emu: Emulator, prober: Prober
) -> None:
    cid = on_air(emu)
    follower = prober.follow(emu.channels[cid].live_stream_url, interval=1.0)
    await drive(emu, follower, 5)
    emu.interrupt_signal(cid)
    [stall] = await drive(emu, follower, 6)
    assert stall.renditions == tuple(LADDER)
    emu.restore_signal(cid)
    assert [d.kind for d in await drive(emu, follower, 3)] == ["resumed"]
    emu.stop_channel(cid)
    assert await drive(emu, follower, 30) == []  # EXT-X-ENDLIST: over, not stalled


async def test_a_rendition_that_404s_makes_the_master_read_again(emu: Emulator, prober: Prober) -> None:
    cid = on_air(emu)
    follower = prober.follow(emu.channels[cid].live_stream_url, interval=1.0)
    await drive(emu, follower, 3)
    master = f"/manifest/{cid}/master.m3u8"
    assert sum(e.path == master for e in emu.journal) == 1
    emu.fail_playback(cid, "480p")
    [stall] = await drive(emu, follower, 5)
    assert stall.renditions == ("480p",) and stall.reason == "http 404"
    assert 2 <= sum(e.path == master for e in emu.journal) <= 6  # again, at most once per interval
    emu.resume_playback(cid)
    assert [d.kind for d in await drive(emu, follower, 3)] == ["resumed"]
