"""Playback health against a real packager: ffmpeg writing a live 1080p/720p/480p ladder, served on loopback.

One rendition frozen is named by a stall within the threshold plus about one read, and resumes when let go;
ffmpeg killed is a stall of every rendition; a fresh ffmpeg (media sequence 0 again) is a resume.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import anyio
import pytest

from sigma_async import PlaybackDecision, SigmaClient
from sigma_async.testing import HlsLadder

LADDER = ("1080p", "720p", "480p")
THRESHOLD = 3.0  # 3 x EXT-X-TARGETDURATION (1 s)
READ = 1.0  # each playlist is read once per max(interval, target duration)
SLACK = 2.0  # a loaded two-core machine: ffmpeg and the test share it


class Decisions:
    """The decisions of a running watch, each with the monotonic time it came, and a way to wait for one."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, PlaybackDecision]] = []
        self.changed = asyncio.Condition()

    async def collect(self, stream: AsyncIterator[PlaybackDecision]) -> None:
        async for decision in stream:
            async with self.changed:
                self.seen.append((time.monotonic(), decision))
                self.changed.notify_all()

    async def next(self, kind: str, *, after: int, timeout: float) -> tuple[float, PlaybackDecision]:
        with anyio.fail_after(timeout):
            async with self.changed:
                await self.changed.wait_for(lambda: len(self.seen) > after)
        when, decision = self.seen[after]
        assert decision.kind == kind, f"expected {kind}, got {decision}"
        return when, decision


async def until(condition: Callable[[], object], *, timeout: float) -> None:
    with anyio.fail_after(timeout):
        while not condition():  # noqa: ASYNC110 - requests an HTTP server records: nothing signals them
            await anyio.sleep(0.05)


@pytest.fixture
async def ladder() -> AsyncIterator[HlsLadder]:
    async with HlsLadder() as running:
        yield running


async def test_a_real_packager_frozen_let_go_killed_and_restarted(ladder: HlsLadder) -> None:
    decisions = Decisions()
    async with (
        SigmaClient(username="u", secret_key="s", app_id="a", base_url="http://127.0.0.1:9") as client,
        anyio.create_task_group() as tg,
    ):
        report = await client.playback.probe(ladder.url)
        assert report.state == "playing"
        assert [(r.name, r.target_duration, r.error) for r in report.renditions] == [(n, 1.0, None) for n in LADDER]
        assert [r.bandwidth for r in report.renditions] == sorted((r.bandwidth for r in report.renditions),
                                                                   reverse=True)  # fmt: skip

        tg.start_soon(decisions.collect, client.playback.watch(ladder.url, interval=0.5))
        reads = lambda name: sum(1 for path, _ in ladder.requests if path == ladder.playlist_path(name))  # noqa: E731
        await until(lambda: reads("480p") >= 4, timeout=10)
        assert decisions.seen == []  # a healthy ladder: nothing to say

        # One rendition stuck: named alone, within the threshold plus about one read.
        ladder.freeze("720p")
        frozen_at = time.monotonic()
        stalled_at, stall = await decisions.next("stalled", after=0, timeout=THRESHOLD + 2 * READ + 10)
        assert stall.renditions == ("720p",) and stall.reason == "stale"
        assert THRESHOLD - READ <= stalled_at - frozen_at <= THRESHOLD + READ + READ + SLACK
        # One look agrees: the frozen playlist's Last-Modified is older than the threshold.
        with anyio.fail_after(10):
            while (report := await client.playback.probe(ladder.url)).state != "stalled":  # noqa: ASYNC110 - HTTP
                await anyio.sleep(0.2)
        assert report.stalled == ["720p"]

        ladder.thaw("720p")
        thawed_at = time.monotonic()
        resumed_at, resume = await decisions.next("resumed", after=1, timeout=READ + 10)
        assert resume.renditions == ("720p",) and resumed_at - thawed_at <= READ + SLACK

        # The packager crashes: no EXT-X-ENDLIST, every rendition stops.
        await ladder.kill()
        killed_at = time.monotonic()
        crashed_at, crash = await decisions.next("stalled", after=2, timeout=THRESHOLD + 2 * READ + 10)
        assert set(crash.renditions) == set(LADDER)
        assert crashed_at - killed_at <= THRESHOLD + READ + READ + SLACK

        # A fresh packager counts from 0 again: that is an advance, and the output resumes.
        await ladder.start()
        started_at = time.monotonic()
        back_at, back = await decisions.next("resumed", after=3, timeout=READ + 10)
        assert set(back.renditions) == set(LADDER) and back_at - started_at <= READ + SLACK
        report = await client.playback.probe(ladder.url)
        assert report.state == "playing" and all((r.media_sequence or 0) <= 3 for r in report.renditions)
        tg.cancel_scope.cancel()

    assert len(decisions.seen) == 4
    for path, headers in ladder.requests:
        assert not {"authorization", "x-app-id"} & {h.lower() for h in headers}, path


async def test_a_packager_that_ends_properly_is_over_not_stalled(ladder: HlsLadder) -> None:
    decisions = Decisions()
    async with (
        SigmaClient(username="u", secret_key="s", app_id="a", base_url="http://127.0.0.1:9") as client,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(decisions.collect, client.playback.watch(ladder.url, interval=0.5))
        await ladder.stop()  # SIGTERM: ffmpeg writes EXT-X-ENDLIST
        with anyio.fail_after(10):
            while (await client.playback.probe(ladder.url)).state != "ended":  # noqa: ASYNC110 - polling HTTP
                await anyio.sleep(0.2)
        reads = len(ladder.requests)
        await until(lambda: len(ladder.requests) >= reads + 3 * 5, timeout=15)  # five more rounds, over 3 s
        tg.cancel_scope.cancel()
    assert decisions.seen == []
