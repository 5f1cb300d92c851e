"""Each example runs against the emulator, as a user would run it against the real API."""

from __future__ import annotations

import asyncio
import importlib.util
import io
import json
import os
import re
import signal
import socket
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
    assert by_channel[channels[0].id] == ["initializing", "started", "live", "stable", "stopped", "ended"]
    assert by_channel[channels[1].id] == ["initializing", "started", "live", "stable"]


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
        follower = asyncio.create_task(example.follow(client, p, interval=0.02))
        emu.connect_publisher(p.channel_id)
        await emu.wait_for(lambda: emu.journal.count("GET /events") >= 3)
        await client.channels.stop(p.channel_id)
        seen = await asyncio.wait_for(follower, 5)
    assert [t.kind for t in seen] == ["live", "stable", "stopped", "ended"]  # from on air on, each once
    assert catchup_playlist_url("https://s3.test/vod", p.session_id).endswith(
        f"/vod/sigma-livestream/{p.session_id}/catchup/master-catchup.m3u8"
    )


async def test_provision_catchup_runs_to_its_end_against_an_emulator_without_s3_keys(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    example = load("provision_catchup")
    monkeypatch.delenv("S3_ACCESS_KEY", raising=False)
    monkeypatch.delenv("S3_SECRET_KEY", raising=False)
    # As the README runs it: an emulator whose sessions go live by themselves, the example stopping the channel.
    async with Emulator(speed=20, auto_publish=2) as emu:
        use_emulator(monkeypatch, emu)
        argv = ["news", "vod", "https://s3.example.com", "hn", "--stop-after", "0.1"]
        assert await asyncio.wait_for(example.main(argv, interval=0.05), 20) == 0
        (session,) = emu.sessions.values()
        assert session.status == "ended" and session.started_at is not None
    out, err = capsys.readouterr()
    assert "on air" in out and out.rstrip().endswith(f"/vod/sigma-livestream/{session.id}/catchup/master-catchup.m3u8")
    assert "using placeholders" in err


async def test_provision_catchup_without_s3_keys_against_a_real_api_says_what_to_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    example = load("provision_catchup")
    for name in ("S3_ACCESS_KEY", "S3_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in (("USERNAME", "u"), ("SECRET_KEY", "k"), ("APP_ID", "a"), ("BASE_URL", "https://sigma.test")):
        monkeypatch.setenv(f"SIGMA_{name}", value)
    with pytest.raises(SystemExit, match="set S3_ACCESS_KEY and S3_SECRET_KEY"):
        await example.main(["news", "vod", "https://s3.example.com", "hn"])


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

                async def post(path: str) -> tuple[int, dict[str, object]]:
                    async with http.post(base + path) as resp:
                        return resp.status, dict(await resp.json())

                async def state() -> dict[str, object]:
                    async with http.get(f"{base}/channels/{channel.id}") as resp:
                        return dict(await resp.json())

                assert await post(f"/channels/{channel.id}/start") == (200, {"channel_id": channel.id, "started": True})
                # Starting twice is the caller's mistake, said as such: 409 and why, never a 500 and a traceback.
                status, body = await post(f"/channels/{channel.id}/start")
                assert (status, body["error"]) == (409, "ConflictError") and "already started" in str(body["message"])
                emu.connect_publisher(channel.id)
                await until_async(lambda: state(), lambda s: s["state"] == "stable")
                assert (await post(f"/channels/{channel.id}/stop"))[0] == 200
                status, body = await post(f"/channels/{channel.id}/stop")
                assert (status, body["error"]) == (409, "ConflictError") and "not started" in str(body["message"])
                final = await until_async(lambda: state(), lambda s: s["state"] == "ended")
                assert final["session_id"] == emu.sessions[str(final["session_id"])].id
                assert await post("/channels/nope/start") == (404, {"error": "NotFoundError",
                                                                    "message": "Channel nope not found"})  # fmt: skip
                status, body = await post("/channels/..%2Fx/start")
                assert (status, body["error"]) == (400, "BadRequest")
                emu.faults.add("PATCH /channels/{id}/start", Fault(status=500), times=4)  # every retry fails too
                status, body = await post(f"/channels/{channel.id}/start")
                assert (status, body["error"]) == (502, "ServerError")
        finally:
            await runner.cleanup()


async def test_channel_service_listens_apart_from_the_emulator_of_the_readme(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    example = load("channel_service")
    readme = (EXAMPLES.parent / "README.md").read_text()
    emulator_ports = {int(port) for port in re.findall(r"sigma-async emulator --port (\d+)", readme)}
    assert emulator_ports and example.DEFAULT_PORT not in emulator_ports  # both run side by side, as documented
    async with Emulator(manual_clock=True) as emu:
        use_emulator(monkeypatch, emu)
        stop = asyncio.Event()
        async with emu.client() as client:
            service = asyncio.create_task(example.serve(client, "127.0.0.1", 0, stop=stop))
            line = await emu.wait_for(lambda: capsys.readouterr().out, timeout=5)
            url = re.fullmatch(r"serving on (http://127\.0\.0\.1:\d+)\n", line)
            assert url, line
            async with aiohttp.ClientSession() as http, http.get(f"{url.group(1)}/channels/x") as resp:
                assert resp.status == 200
            stop.set()
            await asyncio.wait_for(service, 5)
        # A port already taken is one line on stderr and exit status 1.
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            assert await example.main(["--port", str(taken.getsockname()[1])]) == 1
        assert "cannot listen on 127.0.0.1:" in capsys.readouterr().err


def use_emulator(monkeypatch: pytest.MonkeyPatch, emu: Emulator) -> None:
    """Point ``SigmaClient.from_env`` at ``emu``, as a user's shell would with ``export SIGMA_...``."""
    for name, value in (("USERNAME", emu.username), ("SECRET_KEY", emu.secret_key), ("APP_ID", emu.app_id),
                        ("BASE_URL", emu.url)):  # fmt: skip
        monkeypatch.setenv(f"SIGMA_{name}", value)


async def until_async(
    fetch: Callable[[], Awaitable[dict[str, object]]], ok: Callable[[dict[str, object]], bool], timeout: float = 5.0
) -> dict[str, object]:
    """Poll an async read until it satisfies ``ok``, within a deadline."""
    with anyio.fail_after(timeout):
        while not ok(value := await fetch()):  # noqa: ASYNC110 - polling an HTTP read
            await asyncio.sleep(0.01)
    return value
