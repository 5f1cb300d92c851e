"""The relay with ``playback=True``: stall and resume records between Live and Ended, and the stalled gauge."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from sigma_async.relay import Relay
from sigma_async.relay._metrics import RelayMetrics
from sigma_async.testing import Emulator

from ._support import ScriptedSink, live_session, no_wait

INTERVAL = 0.05


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(speed=10, seed=71) as emulator:
        yield emulator


def stalled_now(metrics: RelayMetrics) -> float:
    text = metrics.render()[0].decode()
    [line] = [line for line in text.splitlines() if line.startswith("sigma_relay_playback_stalled ")]
    return float(line.split()[1])


async def test_stall_and_resume_records_go_out_in_order_and_the_gauge_follows(emu: Emulator) -> None:
    cid, sid = live_session(emu, "relayed")
    sink = ScriptedSink()
    metrics = RelayMetrics(sink="scripted")
    async with emu.client() as client:
        relay = Relay(
            client, sink, session_ids=[sid], session_channels={sid: cid}, interval=INTERVAL, observer=metrics,
            sleep=no_wait, playback=True, playback_stall_after=0.6,
        )  # fmt: skip
        kinds = lambda: [r["kind"] for r in sink.accepted]  # noqa: E731
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(relay.run)
                await emu.wait_for(lambda: "stable" in kinds(), timeout=10)
                emu.stall_playback(cid)
                await emu.wait_for(lambda: "playback_stalled" in kinds(), timeout=10)
                assert stalled_now(metrics) == 1
                emu.resume_playback(cid)
                await emu.wait_for(lambda: "playback_resumed" in kinds(), timeout=10)
                assert stalled_now(metrics) == 0
                emu.stop_channel(cid)  # the relay ends with the session
    assert kinds() == [
        "initializing", "started", "live", "stable", "playback_stalled", "playback_resumed", "stopped", "ended",
    ]  # fmt: skip
    stalled = sink.accepted[4]
    assert (stalled["renditions"], stalled["reason"], stalled["source"], stalled["channel_id"]) == (
        ["1080p", "720p", "480p"], "stale", "playback", cid,
    )  # fmt: skip
    assert stalled["id"] == f"{sid}:playback_stalled:1"

