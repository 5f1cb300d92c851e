"""``sigma-async relay`` as its users run it: flags, config file, exit statuses, signals, secrets kept out."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest
from aiohttp import web

from sigma_async.relay import verify_signature
from sigma_async.testing import Emulator

from ._support import live_session, run_course

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="sends POSIX signals")

SECRET = "whsec-NEVER-PRINTED"


async def relay(emu: Emulator, *args: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    full_env = {
        **os.environ, "SIGMA_BASE_URL": emu.url, "SIGMA_USERNAME": emu.username,
        "SIGMA_SECRET_KEY": emu.secret_key, "SIGMA_APP_ID": emu.app_id, **(env or {}),
    }  # fmt: skip
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sigma_async", "relay", "--interval", "0.05", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=full_env,
    )  # fmt: skip


async def finish(proc: asyncio.subprocess.Process, timeout: float = 30) -> tuple[int, str, str]:
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_records_on_stdout_and_exit_0_when_every_session_has_ended(emu: Emulator, tmp_path: Path) -> None:
    (ch_a, sid_a), (ch_b, sid_b) = live_session(emu, "a"), live_session(emu, "b")
    config = tmp_path / "relay.toml"
    config.write_text(f'sink = "-"\nsessions = ["{sid_a}"]\n')
    proc = await relay(emu, "--config", str(config), "--session", sid_b)  # the file's list and the flag's, both
    run_course(emu, ch_a)
    run_course(emu, ch_b)
    status, out, err = await finish(proc)
    assert status == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert {r["session_id"] for r in records if r["kind"] == "ended"} == {sid_a, sid_b}
    assert f"{len(records)} delivered, 0 rejected" in err


async def test_sigterm_stops_it_with_status_0(emu: Emulator, tmp_path: Path) -> None:
    _, sid = live_session(emu)
    out_file = tmp_path / "out.jsonl"
    proc = await relay(emu, "--sink", f"file:{out_file}", "--store", f"file:{tmp_path / 'c.json'}", "--session", sid)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while not (out_file.exists() and out_file.read_text().count("\n") >= 3):
        assert loop.time() < deadline, "the relay delivers the session's first transitions"
        await asyncio.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    status, _, err = await finish(proc)
    assert status == 0 and "stopping after the deliveries in flight" in err
    saved = json.loads((tmp_path / "c.json").read_text())
    last = json.loads(out_file.read_text().splitlines()[-1])
    assert saved == {sid: last["cursor"]}, "what went out before the stop is saved"


async def test_a_signed_webhook_with_the_secret_from_the_environment(emu: Emulator) -> None:
    bodies: list[tuple[str, bytes]] = []

    async def hook(request: web.Request) -> web.Response:
        bodies.append((request.headers.get("Sigma-Signature", ""), await request.read()))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        channel_id, sid = live_session(emu)
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
        proc = await relay(emu, "-vv", "--sink", url, "--session", sid, env={"SIGMA_WEBHOOK_SECRET": SECRET})
        run_course(emu, channel_id)
        status, out, err = await finish(proc)
    finally:
        await runner.cleanup()
    assert status == 0, err
    assert bodies and all(verify_signature(body, header, SECRET) for header, body in bodies)
    assert json.loads(bodies[-1][1])["kind"] == "ended"
    assert SECRET not in out + err and emu.secret_key not in out + err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--session", "s-1"], "needs --sink"),
        (["--sink", "-"], "needs something to watch"),
        (["--sink", "sqs://queue", "--session", "s-1"], "unknown sink"),
        (["--sink", "-", "--store", "redis://x", "--session", "s-1"], "unknown store"),
        (["--sink", "-", "--session", "s-1", "--replica", "a"], "--replica needs a shared store"),
        (["--sink", "-", "--session", "../x"], "session id"),
        (["--sink", "-", "--config", "/nonexistent/relay.toml"], "cannot read config file"),
    ],
)
async def test_usage_errors_exit_2_with_one_line(emu: Emulator, args: list[str], message: str) -> None:
    status, _, err = await finish(await relay(emu, *args))
    assert status == 2, err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


async def test_a_session_the_api_does_not_know_fails_alone_with_status_1(emu: Emulator) -> None:
    channel_id, sid = live_session(emu)
    proc = await relay(emu, "--sink", "-", "--session", sid, "--session", "no-such-session")
    run_course(emu, channel_id)
    status, out, err = await finish(proc)
    assert status == 1
    assert "no-such-session" in err and "Traceback" not in err
    assert json.loads(out.splitlines()[-1])["kind"] == "ended", "the other session was relayed to its end"
