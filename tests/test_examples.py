"""Each example runs against the emulator, as a user would run it against the real API."""

from __future__ import annotations

import asyncio
import importlib.util
import io
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType

import aiohttp
import anyio
import pytest
from aiohttp import web

from sigma_async import RetryPolicy, S3Destination, UnprocessableEntityError, catchup_playlist_url
from sigma_async.testing import Emulator, Fault

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def test_monitor_service_logs_every_transition_as_json_lines() -> None:
    example = load("monitor_service")
    async with Emulator(manual_clock=True) as emu, emu.client() as client:
        channels = [emu.create_channel(f"c{i}") for i in range(3)]
        out = io.StringIO()
        stop = asyncio.Event()
        service = asyncio.create_task(example.run(client, [c.id for c in channels], out, interval=0.02, stop=stop))
        for channel in channels:
            emu.start_channel(channel.id)
            emu.connect_publisher(channel.id)
        await emu.wait_for(lambda: out.getvalue().count('"kind":"stable"') == 3)
        emu.stop_channel(channels[0].id)
        await emu.wait_for(lambda: '"kind":"ended"' in out.getvalue())
        stop.set()
        logged = await asyncio.wait_for(service, 5)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert logged == len(lines) >= 3 * 3 + 2
    by_channel = {c.id: [line["kind"] for line in lines if line["channel_id"] == c.id] for c in channels}
    assert by_channel[channels[0].id] == ["initializing", "started", "stable", "stopped", "ended"]
    assert by_channel[channels[1].id] == ["initializing", "started", "stable"]


async def test_monitor_service_appends_to_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    example = load("monitor_service")
    out = tmp_path / "transitions.jsonl"
    async with Emulator(manual_clock=True) as emu:
        channel = emu.create_channel("to-file")
        session = emu.start_channel(channel.id)
        for name, value in (("USERNAME", emu.username), ("SECRET_KEY", emu.secret_key), ("APP_ID", emu.app_id),
                            ("BASE_URL", emu.url)):
            monkeypatch.setenv(f"SIGMA_{name}", value)
        service = asyncio.create_task(example.main(["--out", str(out), "--interval", "0.02", channel.id]))
        await emu.wait_for(lambda: out.exists() and '"kind":"initializing"' in out.read_text())
        emu.stop_channel(channel.id)
        await emu.wait_for(lambda: '"kind":"ended"' in out.read_text())
        os.kill(os.getpid(), signal.SIGINT)  # the service's own SIGINT handler stops it cleanly
        assert await asyncio.wait_for(service, 5) == 0
    kinds = [json.loads(line)["kind"] for line in out.read_text().splitlines()]
    assert kinds == ["initializing", "stopped", "ended"]
    assert all(json.loads(line)["session_id"] == session.id for line in out.read_text().splitlines())


async def test_provision_catchup_creates_starts_and_follows_to_the_end() -> None:
    example = load("provision_catchup")
    s3 = S3Destination(access_key="ak", secret_key="S3-SECRET", bucket="vod", endpoint="https://s3.test", region="hn")
    async with Emulator(manual_clock=True) as emu, emu.client() as client:
        p = await example.provision(client, "news", s3)
        channel = emu.channels[p.channel_id]
        assert channel.to_model().destination_catchup.s3.secret_key == "S3-SECRET"
        assert p.publish_url and p.publish_url.startswith("rtmp://") and p.session_id in emu.sessions
        follower = asyncio.create_task(example.wait_until_live_then_ended(client, p.session_id, interval=0.02))
        emu.connect_publisher(p.channel_id)
        await emu.wait_for(lambda: emu.journal.count("GET /events") >= 3)
        await client.channels.stop(p.channel_id)
        seen = await asyncio.wait_for(follower, 5)
    assert [t.kind for t in seen] == ["stable", "stopped", "ended"]  # from live on, each once
    assert catchup_playlist_url("https://s3.test/vod", p.session_id).endswith(
        f"/vod/sigma-livestream/{p.session_id}/catchup/master-catchup.m3u8"
    )


async def test_bulk_provision_reports_created_and_failed() -> None:
    example = load("bulk_provision")
    names = [f"stage-{i}" for i in range(30)]
    async with Emulator(manual_clock=True) as emu, emu.client(retry=RetryPolicy(max_retries=0)) as client:
        emu.faults.add("POST /channels", Fault(status=422, message="name taken"), times=1)
        created, failed = await example.provision_many(client, names, concurrency=4)
        assert emu.journal.max_in_flight <= 4
    assert len(created) == 29 and len(failed) == 1
    assert isinstance(failed[0][1], UnprocessableEntityError) and "name taken" in str(failed[0][1])
    assert sorted(c.name for c in created) == sorted(set(names) - {failed[0][0]})


async def test_channel_service_starts_channels_and_serves_their_state() -> None:
    example = load("channel_service")
    async with Emulator(manual_clock=True) as emu, emu.client() as client:
        channel = emu.create_channel("served")
        runner = web.AppRunner(example.build_app(client, interval=0.02))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        try:
            async with aiohttp.ClientSession() as http:
                async with http.post(f"{base}/channels/{channel.id}/start") as resp:
                    assert resp.status == 200
                emu.connect_publisher(channel.id)

                async def state() -> dict[str, object]:
                    async with http.get(f"{base}/channels/{channel.id}") as resp:
                        return dict(await resp.json())

                await until_async(lambda: state(), lambda s: s["state"] == "stable")
                async with http.post(f"{base}/channels/{channel.id}/stop") as resp:
                    assert resp.status == 200
                final = await until_async(lambda: state(), lambda s: s["state"] == "ended")
                assert final["session_id"] == emu.sessions[str(final["session_id"])].id
                async with http.post(f"{base}/channels/nope/start") as resp:
                    assert resp.status == 404
                async with http.post(f"{base}/channels/..%2Fx/start") as resp:
                    assert resp.status == 400
        finally:
            await runner.cleanup()


async def until_async(
    fetch: Callable[[], Awaitable[dict[str, object]]], ok: Callable[[dict[str, object]], bool], timeout: float = 5.0
) -> dict[str, object]:
    """Poll an async read until it satisfies ``ok``, within a deadline."""
    with anyio.fail_after(timeout):
        while not ok(value := await fetch()):  # noqa: ASYNC110 - polling an HTTP read
            await asyncio.sleep(0.01)
    return value
