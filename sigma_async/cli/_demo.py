"""``sigma-async demo``: the SDK end to end in a few seconds, against an embedded emulator (no account, no network)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime

import anyio

from .._client import SigmaClient
from ..models import Channel, ChannelCreate, S3Destination, catchup_playlist_url
from ..testing import Emulator
from ..transitions import PlaybackResumed, PlaybackStalled, Transition
from ._output import Output

__all__ = ["DEMO_S3", "run_demo"]

#: A made-up bucket: the emulator never writes to it, but the playlist URL is built exactly as for a real one.
DEMO_S3 = S3Destination(
    access_key="demo-access-key",
    bucket="demo-vod",
    endpoint="https://s3.example.com",
    secret_key="demo-secret-key",
    region="us-east-1",
)
S3_BASE = f"{DEMO_S3.endpoint}/{DEMO_S3.bucket}"

#: What each transition means, for someone seeing them for the first time.
MEANING = {
    "initializing": "the session is being set up",
    "started": "a publisher connected",
    "live": "the stream is live",
    "stable": "the stream is healthy",
    "interrupted": "the signal dropped",
    "restored": "the signal is back",
    "stopped": "the channel was stopped",
    "ended": "the session is over; its recording is the catchup VOD",
    "playback_stalled": "what viewers get froze, while the API still says live",
    "playback_resumed": "the HLS output advances again",
}
KIND_STYLES = {"interrupted": "yellow", "playback_stalled": "yellow", "ended": "bold cyan", "stopped": "cyan"}


async def run_demo(out: Output, *, channels: int = 5, speed: float = 30.0, pace: float = 0.4) -> int:
    """Provision ``channels`` channels, run one live session to its end while watching it, then clean up.

    ``speed`` is the emulated clock's speed-up (durations look real, the demo takes seconds); ``pace`` is the
    real pause between the simulated publisher's actions, so that a person can follow them.
    """
    began = time.monotonic()
    demo = _Demo(out, pace)
    async with Emulator(speed=speed) as emu, emu.client(timeout=10) as client:
        demo.clock = emu.clock.now
        demo.heading("sigma-async demo")
        demo.say(f"An emulator of the Sigma Livestream API is serving on {emu.url} inside this process:")
        demo.say(f"no account, no network. Its clock runs {speed:g}x fast, so session times look real.")

        demo.step(1, f"Provision {channels} channels concurrently  (client.channels.create_many)")
        created = await demo.provision(client, channels)

        channel = created[0]
        demo.step(2, f"Start {channel.name}  (client.channels.start)")
        await client.channels.start(channel.id)
        channel = await client.channels.get(channel.id)
        session_id = channel.current_session_id
        if session_id is None:  # pragma: no cover - the emulator always opens a session on start
            raise RuntimeError("the started channel names no session")
        demo.fields([("session", session_id), ("publish url", channel.input.publish_url or "")])

        demo.step(3, "Watch the session live while a simulated encoder publishes  (client.watch_session),")
        demo.say("   its HLS output at the channel's liveStreamUrl included  (playback=True)")
        with anyio.fail_after(60):  # a demo that hangs teaches nothing
            await demo.live_session(emu, client, channel, session_id)

        demo.step(4, "The recording  (catchup_playlist_url)")
        sessions = (await client.sessions.list(channel.id)).data
        session = next(s for s in sessions if s.id == session_id)
        url = catchup_playlist_url(S3_BASE, session_id)
        demo.fields([
            ("session", f"{session.status}, lasted {session.duration or 0:g} s (emulated)"),
            ("catchup playlist", url),
        ])  # fmt: skip

        demo.step(5, f"Clean up: delete the {len(created)} channels  (client.channels.delete_many)")
        results = await client.channels.delete_many([c.id for c in created])
        failed = [r for r in results if r is not None]
        demo.say(f"   deleted {len(results) - len(failed)} channels")
        if out.json:
            out.json_line({
                "sessionId": session_id, "channelIds": [c.id for c in created], "catchupPlaylistUrl": url,
                "deleted": len(results) - len(failed),
            })  # fmt: skip
    demo.say("")
    demo.say(f"Done in {time.monotonic() - began:.1f} s.", style="bold green")
    demo.next_steps()
    return 1 if failed else 0


class _Demo:
    """The demo's narration: human text on stdout, or (with ``--json``) only the transitions and a summary."""

    def __init__(self, out: Output, pace: float) -> None:
        self.out = out
        self.pace = pace
        self.seen: list[str] = []
        self.changed = asyncio.Condition()
        self.first_at: datetime | None = None
        #: The emulator's clock: each line is timed when it is seen, in emulated time, whatever its source.
        self.clock: Callable[[], datetime] | None = None

    def heading(self, text: str) -> None:
        self.say(text, style="bold")

    def step(self, number: int, text: str) -> None:
        self.say("")
        self.say(f"{number}. {text}", style="bold")

    def say(self, text: str, style: str | None = None) -> None:
        if not self.out.json:
            self.out.text(text, style=style)

    def fields(self, pairs: list[tuple[str, str]]) -> None:
        if not self.out.json:
            self.out.fields([(f"   {k}", v) for k, v in pairs])

    async def provision(self, client: SigmaClient, count: int) -> list[Channel]:
        specs = [
            ChannelCreate(
                name=f"demo-{i}", description="made by sigma-async demo", tags=["demo"], destination_catchup=DEMO_S3
            )
            for i in range(1, count + 1)
        ]
        with self.out.progress(count, "   creating") as progress:
            results = await client.channels.create_many(specs, concurrency=8, on_progress=progress)
        created = [r for r in results if isinstance(r, Channel)]
        errors = [r for r in results if not isinstance(r, Channel)]
        if errors:
            raise errors[0]
        if not self.out.json:
            rows = [[c.name, c.id, f"s3://{DEMO_S3.bucket}" if c.catchup else "off"] for c in created]
            self.out.table(["name", "channel id", "catchup"], rows)
        return created

    async def live_session(self, emu: Emulator, client: SigmaClient, channel: Channel, session_id: str) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._watch, emu, client, channel, session_id)
            await self._publish(emu, client, channel.id)

    async def _watch(self, emu: Emulator, client: SigmaClient, channel: Channel, session_id: str) -> None:
        # playback=True judges the HLS output too. Its clock is real time while the emulator's runs 30x fast: a
        # stall is called after half a real second (15 emulated) without an advance, rather than 3 target durations.
        async for transition in client.watch_session(
            session_id, interval=0.1, channel_id=channel.id, playback=True, playback_stall_after=0.5
        ):
            await self._seen(transition)
            if isinstance(transition, PlaybackStalled):
                await self._show_probe(client, channel.id, emu.clock.speed)

    async def _show_probe(self, client: SigmaClient, channel_id: str, speed: float) -> None:
        if self.out.json:
            return
        # One look judges by Last-Modified, in whole seconds: it agrees with the watch an emulated second or two on.
        while (report := await client.playback.probe(channel_id)).state != "stalled":  # noqa: ASYNC110
            await anyio.sleep(0.5 / speed)
        self.say(f"   client.playback.probe(channel): {report.state}")
        rows = [[f"   {r.name}", str(r.media_sequence), f"{r.age or 0:.0f} s", r.state] for r in report.renditions]
        self.out.table(["   rendition", "sequence", "age", "state"], rows)

    async def _seen(self, transition: Transition) -> None:
        self._show(transition)
        async with self.changed:
            self.seen.append(transition.kind)
            self.changed.notify_all()

    async def _publish(self, emu: Emulator, client: SigmaClient, channel_id: str) -> None:
        # Each action waits until the watcher has shown the previous one, so cause and effect read in order.
        await self._after("initializing", "an encoder connects and pushes the stream")
        emu.connect_publisher(channel_id)
        await self._after("stable", "the transcoder's 720p output freezes; the encoder is fine  (emu.stall_playback)")
        emu.stall_playback(channel_id, "720p")
        await self._after("playback_stalled", "the transcoder recovers  (emu.resume_playback)")
        emu.resume_playback(channel_id)
        await self._after("playback_resumed", "the encoder's signal drops")
        emu.interrupt_signal(channel_id)
        await self._after("interrupted", "the signal comes back")
        emu.restore_signal(channel_id)
        await self._after("restored", "we stop the channel  (client.channels.stop)")
        await client.channels.stop(channel_id)

    async def _after(self, kind: str, action: str) -> None:
        async with self.changed:
            await self.changed.wait_for(lambda: kind in self.seen)
        await anyio.sleep(self.pace)  # presentation only: the reader follows one step at a time
        self.say(f"   > {action}", style="italic")

    def _show(self, t: Transition) -> None:
        if self.out.json:
            self.out.json_line(t)
            return
        seen = self.clock() if self.clock is not None else t.at
        self.first_at = self.first_at or seen
        offset = max(0, int((seen - self.first_at).total_seconds()))
        server = f'  server: "{t.event.message}"' if t.event is not None and t.event.message else ""
        if isinstance(t, (PlaybackStalled, PlaybackResumed)):
            server = f"  renditions: {', '.join(t.renditions)} ({t.reason})"
        line = f"     +{offset // 60:02d}:{offset % 60:02d}  {t.kind:<16}  {MEANING.get(t.kind, '')}{server}"
        self.out.text(line, style=KIND_STYLES.get(t.kind, "green"))

    def next_steps(self) -> None:
        self.say("")
        self.say("Next:", style="bold")
        for line in (
            "  sigma-async emulator --port 8080 --auto-publish 5   # an emulator whose sessions go live 5 s after",
            "                                          # each start; then in another shell:",
            "  export SIGMA_BASE_URL=http://127.0.0.1:8080 SIGMA_USERNAME=emulator \\",
            "         SIGMA_SECRET_KEY=emulator-secret SIGMA_APP_ID=emulator-app",
            "  sigma-async channels create --name news",
            "  sigma-async --help                      # with your own account: SIGMA_* variables or --env-file",
        ):
            self.say(line)
