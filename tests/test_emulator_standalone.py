"""The emulator as its own process: ``python -m sigma_async.testing`` prints its URL, serves, exits cleanly."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import re
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest

import sigma_async
from sigma_async import ChannelCreate, SigmaClient
from sigma_async.testing import Emulator, Fault, main, serve

REPO = Path(sigma_async.__file__).resolve().parents[1]
READY = re.compile(r"listening on (http://127\.0\.0\.1:(\d+)) username=(\S+) app_id=(\S+) secret_key=(\S+)")

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="sends POSIX signals")


async def _start(*args: str) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sigma_async.testing",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )


@pytest.mark.parametrize("stop_with", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_standalone_serves_then_exits_cleanly(stop_with: signal.Signals) -> None:
    proc = await _start("--port", "0", "--username", "u", "--secret-key", "s3cret", "--app-id", "app-1", "--speed", "5")
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), timeout=20)).decode()
        ready = READY.search(line)
        assert ready, line
        url, port, username, app_id, secret = ready.groups()
        assert int(port) > 0 and (username, app_id, secret) == ("u", "app-1", "s3cret")

        headers = {"Authorization": "Basic " + base64.b64encode(b"u:s3cret").decode(), "X-App-Id": "app-1"}
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{url}/api/livestream/sessions", headers=headers) as reply:
                assert reply.status == 200
                assert (await reply.json())["total"] == 0
            async with http.get(f"{url}/api/livestream/sessions") as reply:
                assert reply.status == 401

        proc.send_signal(stop_with)
        assert await asyncio.wait_for(proc.wait(), timeout=10) == 0
        stderr = (await proc.stderr.read()).decode()
        assert "Traceback" not in stderr, stderr
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_serve_runs_until_stopped() -> None:
    stop = asyncio.Event()
    ready: asyncio.Queue[Emulator] = asyncio.Queue()
    task = asyncio.create_task(serve(Emulator(seed=1), stop=stop, on_ready=ready.put_nowait))
    emu = await asyncio.wait_for(ready.get(), timeout=5)
    async with aiohttp.ClientSession() as http, http.get(emu.url + "/api/livestream/sessions") as reply:
        assert reply.status == 401
    stop.set()
    await asyncio.wait_for(task, timeout=5)
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as http, http.get(emu.url + "/api/livestream/sessions"):
            pass


async def test_serve_prints_the_ready_line() -> None:
    stop = asyncio.Event()
    out = io.StringIO()
    task = asyncio.create_task(serve(Emulator(app_id="a-1"), stop=stop, out=out))
    emu = Emulator()  # just for wait_for, never started
    line = await emu.wait_for(out.getvalue, timeout=5)
    stop.set()
    await task
    assert READY.search(line) and "app_id=a-1" in line


def test_main_reports_a_busy_port(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["--port", str(port)]) == 1
    assert "cannot listen" in capsys.readouterr().err


# -- sessions that go live without in-process calls ---------------------------------------------------------------

AUTH = {"Authorization": "Basic " + base64.b64encode(b"emulator:emulator-secret").decode(), "X-App-Id": "emulator-app"}


async def test_auto_publish_connects_a_publisher_after_each_start() -> None:
    async with Emulator(manual_clock=True, auto_publish=5) as emu, emu.client() as client:
        channel = emu.create_channel("auto", stop_timeout=30)
        await client.channels.start(channel.id)
        first = emu.channels[channel.id].current_session_id
        assert first is not None
        emu.clock.advance(4.9)
        assert (await client.sessions.status(first)).status == "initializing"
        emu.clock.advance(0.1)
        assert (await client.sessions.status(first)).status == "live"
        assert [e.action for e in emu.sessions[first].events] == ["initialize", "start", "stable"]
        # Every start gets its publisher, not just the first.
        await client.channels.stop(channel.id)
        await client.channels.start(channel.id)
        second = emu.channels[channel.id].current_session_id
        assert second is not None and second != first
        emu.clock.advance(5)
        assert (await client.sessions.status(second)).status == "live"


async def test_auto_publish_and_stop_timeout_fire_in_time_order_across_a_clock_jump() -> None:
    async with Emulator(manual_clock=True, auto_publish=5) as emu:
        soon = emu.create_channel("publisher first", stop_timeout=30)
        emu.start_channel(soon.id)
        emu.clock.advance(100)  # past both: the publisher (at 5 s) came before the timeout (at 30 s)
        assert emu.sessions[emu.channels[soon.id].current_session_id or ""].status == "live"
    async with Emulator(manual_clock=True, auto_publish=60) as emu:
        late = emu.create_channel("timeout first", stop_timeout=30)
        session = emu.start_channel(late.id)
        emu.clock.advance(100)  # the session ended at 30 s, so the publisher due at 60 s finds nothing to feed
        assert session.status == "ended" and session.started_at is None


async def test_auto_publish_runs_on_the_real_time_clock() -> None:
    async with Emulator(speed=50, auto_publish=5) as emu:  # 5 emulated seconds: a tenth of a real one
        session = emu.start_channel(emu.create_channel("real time").id)
        await emu.wait_for(lambda: session.status == "live", timeout=5)


def test_auto_publish_refuses_a_negative_delay() -> None:
    with pytest.raises(ValueError, match="auto_publish"):
        Emulator(auto_publish=-1)


async def test_control_routes_drive_a_session_over_http() -> None:
    async with Emulator(manual_clock=True) as emu, aiohttp.ClientSession() as http:
        channel = emu.create_channel("driven")
        session = emu.start_channel(channel.id)
        emu.faults.add("*", Fault(status=503), times=10)  # faults stand for the API, not for the test's own hand

        async def control(key: str, action: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
            url = f"{emu.url}/_emulator/sessions/{key}/{action}"
            async with http.post(url, headers=AUTH if headers is None else headers) as reply:
                return reply.status, await reply.json()

        status, body = await control(channel.id, "publish")
        assert (status, body["id"], body["status"]) == (200, session.id, "live")
        assert (await control(session.id, "publish"))[0] == 409  # a session id works too; it already has one
        assert (await control(channel.id, "interrupt"))[1]["status"] == "interrupted"
        assert (await control(channel.id, "restore"))[1]["status"] == "live"
        assert (await control(channel.id, "unpublish"))[1]["status"] == "interrupted"
        status, body = await control("no-such-channel", "publish")
        assert status == 404 and body["statusCode"] == 404
        assert (await control(channel.id, "publish", headers={}))[0] == 401  # authenticated like the API
        assert emu.journal.count("POST /_emulator/sessions/{key}/publish") == 4
        assert [e.action for e in session.events][-1] == "signal_interrupted"


async def test_standalone_auto_publish_makes_a_started_session_go_live() -> None:
    proc = await _start("--port", "0", "--auto-publish", "0.2")
    try:
        assert proc.stdout is not None
        ready = READY.search((await asyncio.wait_for(proc.stdout.readline(), timeout=20)).decode())
        assert ready
        url = ready.group(1)
        assert b"0.2 s after its channel starts" in await asyncio.wait_for(proc.stdout.readline(), timeout=5)
        async with SigmaClient(username="emulator", secret_key="emulator-secret", app_id="emulator-app",
                               base_url=url) as client:
            channel = await client.channels.create(ChannelCreate(name="auto"))
            await client.channels.start(channel.id)
            session_id = (await client.channels.get(channel.id)).current_session_id
            assert session_id is not None
            # The first transition of a session on air, from another process that only made HTTP calls.
            with anyio.fail_after(10):
                await client.wait_for(session_id, "stable", interval=0.05)
    finally:
        proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.wait(), timeout=10)



def test_the_standalone_emulator_can_refuse_app_wide_listings_and_cap_pages(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from sigma_async.testing import build_parser

    args = build_parser().parse_args(["--no-app-wide-listings", "--max-per-page", "50"])
    assert (args.app_wide_listings, args.max_per_page) == (False, 50)
    assert build_parser().parse_args([]).app_wide_listings is True
    with pytest.raises(SystemExit) as exited:
        main(["--max-per-page", "0"])
    assert exited.value.code == 2 and "--max-per-page must be >= 1" in capsys.readouterr().err


def test_the_standalone_emulator_can_throttle_over_a_sliding_window(capsys: pytest.CaptureFixture[str]) -> None:
    from sigma_async.testing import build_parser

    args = build_parser().parse_args(["--throttle", "100", "--throttle-window", "1"])
    assert (args.throttle, args.throttle_window) == (100.0, 1.0)
    for bad, says in ((["--throttle-window", "1"], "needs --throttle"), (["--throttle", "5", "--throttle-window", "0"],
                      "--throttle-window must be")):
        with pytest.raises(SystemExit) as exited:
            main(bad)
        assert exited.value.code == 2 and says in capsys.readouterr().err


async def test_standalone_starts_with_live_sessions_and_holds_answers_back() -> None:
    proc = await _start("--port", "0", "--live-sessions", "5", "--latency", "0.05")
    try:
        assert proc.stdout is not None
        ready = READY.search((await asyncio.wait_for(proc.stdout.readline(), timeout=20)).decode())
        assert ready
        said = [(await asyncio.wait_for(proc.stdout.readline(), timeout=5)).decode() for _ in range(2)]
        assert "5 live sessions on channels live-1 ... live-5" in said[0]
        assert "held back 0.05 s" in said[1]
        headers = {"Authorization": "Basic " + base64.b64encode(b"emulator:emulator-secret").decode(),
                   "X-App-Id": "emulator-app"}  # fmt: skip
        url = f"{ready.group(1)}/api/livestream/sessions"
        async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as reply:
            page = await reply.json()
        assert page["total"] == 5
        assert sorted(s["channel"]["name"] for s in page["data"]) == [f"live-{i}" for i in range(1, 6)]
        assert {s["status"] for s in page["data"]} == {"live"}
        # Each channel's HLS output is at the address the emulator listens on, known before they were made.
        assert all(s["channel"]["liveStreamUrl"].startswith(ready.group(1)) for s in page["data"])
    finally:
        proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.wait(), timeout=10)


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["--latency", "-1"], "--latency must be"), (["--live-sessions", "-3"], "--live-sessions must be >= 0")],
)
def test_bad_scale_options_are_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2 and message in capsys.readouterr().err
