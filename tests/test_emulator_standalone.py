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

import aiohttp
import pytest

import sigma_async
from sigma_async.testing import Emulator, main, serve

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
