"""Playback health against a real packager: how soon a stall and a resume are reported.

ffmpeg writes a live 1080p/720p/480p ladder of 1-second segments (``sigma_async.testing.HlsLadder``), served on
loopback; ``client.playback.watch`` follows it at ``interval``. Each round freezes one rendition (its playlist
served as it was) until the stall is reported, then lets it go until the resume is; rounds turn through the
renditions. Then ffmpeg is killed (a crash, no ``EXT-X-ENDLIST``) until every rendition stalls, and a fresh one
started until the output resumes. Latencies are wall seconds from the change to the decision.
"""

from __future__ import annotations

import random
import statistics
import time
from dataclasses import dataclass

import anyio

from sigma_async import PlaybackDecision, SigmaClient
from sigma_async.testing import HlsLadder

from ._report import Section, status_for

__all__ = ["PlaybackConfig", "run"]

THRESHOLD = 3.0  # 3 x EXT-X-TARGETDURATION
RENDITIONS = ("1080p", "720p", "480p")


@dataclass(frozen=True)
class PlaybackConfig:
    rounds: int = 6
    interval: float = 0.5


@dataclass
class Latencies:
    stall: list[float]
    resume: list[float]
    crash: float
    restart: float
    reads_per_second: float


def run(config: PlaybackConfig) -> Section:
    found = anyio.run(_measure, config)
    read = max(config.interval, 1.0)
    stall_target = THRESHOLD + 2 * read
    sec = Section(
        "playback",
        f"Playback health: ffmpeg ladder (1 s segments), watch at interval {config.interval:g} s, "
        f"{config.rounds} freeze/thaw rounds",
    )
    p50, worst = statistics.median(found.stall), max(found.stall)
    sec.add("freeze -> playback stalled, median", f"{p50:.2f} s", f"threshold {THRESHOLD:g} s", "",
            f"≤ {stall_target:g} s", status_for(p50, below=stall_target))
    sec.add("freeze -> playback stalled, worst", f"{worst:.2f} s", f"threshold {THRESHOLD:g} s", "",
            f"≤ {stall_target:g} s", status_for(worst, below=stall_target))
    r50, rworst = statistics.median(found.resume), max(found.resume)
    sec.add("thaw -> playback resumed, median", f"{r50:.2f} s", f"one read {read:g} s", "",
            f"≤ {2 * read:g} s", status_for(r50, below=2 * read))
    sec.add("thaw -> playback resumed, worst", f"{rworst:.2f} s", f"one read {read:g} s", "",
            f"≤ {2 * read:g} s", status_for(rworst, below=2 * read))
    sec.add("ffmpeg killed -> every rendition stalled", f"{found.crash:.2f} s", f"threshold {THRESHOLD:g} s", "",
            f"≤ {stall_target:g} s", status_for(found.crash, below=stall_target))
    sec.add("fresh ffmpeg (sequence 0) -> resumed", f"{found.restart:.2f} s", "from its first playlists", "",
            f"≤ {2 * read:g} s", status_for(found.restart, below=2 * read))
    sec.add("playlist reads per second (3 renditions)", f"{found.reads_per_second:.2f}",
            f"3 / max(interval, 1 s) = {3 / read:.2f}")
    sec.notes.append(
        "A stall comes at the first read at least the threshold after the read that last saw the playlist change: "
        "between the threshold minus one segment and the threshold plus one read after the freeze."
    )
    sec.data = {"stall": found.stall, "resume": found.resume, "crash": found.crash, "restart": found.restart,
                "reads_per_second": found.reads_per_second}  # fmt: skip
    return sec


async def _measure(config: PlaybackConfig) -> Latencies:
    seen: list[tuple[float, PlaybackDecision]] = []
    changed = anyio.Event()

    async def collect(client: SigmaClient, url: str) -> None:
        nonlocal changed
        async for decision in client.playback.watch(url, interval=config.interval):
            seen.append((time.monotonic(), decision))
            changed.set()
            changed = anyio.Event()

    async def next_decision(kind: str, since: float) -> float:
        with anyio.fail_after(30):
            while not seen or seen[-1][1].kind != kind:
                await changed.wait()
        return seen[-1][0] - since

    stall, resume = [], []
    # Changes land at a random moment between two reads, as they would in production (a freeze right after a
    # read waits a whole read longer to be seen than one right before it).
    phase = random.Random(7)
    async with (
        HlsLadder() as ladder,
        SigmaClient(username="u", secret_key="s", app_id="a", base_url="http://127.0.0.1:9") as client,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(collect, client, ladder.url)
        began, reads_before = time.monotonic(), len(ladder.requests)
        await anyio.sleep(2.0)  # a healthy start: the first reads
        for round_ in range(config.rounds):
            rendition = RENDITIONS[round_ % len(RENDITIONS)]
            await anyio.sleep(phase.uniform(0.0, 1.0))
            ladder.freeze(rendition)
            stall.append(await next_decision("stalled", time.monotonic()))
            await anyio.sleep(phase.uniform(0.0, 1.0))
            ladder.thaw(rendition)
            resume.append(await next_decision("resumed", time.monotonic()))
            await anyio.sleep(1.0)  # let every playlist move on before the next freeze
        reads_per_second = (len(ladder.requests) - reads_before) / (time.monotonic() - began)
        await anyio.sleep(phase.uniform(0.0, 1.0))
        await ladder.kill()
        crash = await next_decision("stalled", time.monotonic())
        await ladder.start()
        restart = await next_decision("resumed", time.monotonic())
        tg.cancel_scope.cancel()
    return Latencies(stall, resume, crash, restart, reads_per_second)
