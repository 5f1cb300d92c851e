"""``sigma-async relay`` as its users run it: flags, config file, exit statuses, signals, secrets kept out."""

from __future__ import annotations

import asyncio
import json
import os
import re
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
        (["--sink", "-", "--session", "s-1", "--playback"], "playback needs each session's channel"),
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


@pytest.mark.parametrize(
    ("config", "flags", "message"),
    [
        ("interval = inf", [], "interval must be a number of seconds > 0"),
        ("interval = nan", [], "interval must be a number of seconds > 0"),
        ("interval = 0", [], "interval must be a number of seconds > 0"),
        ("lease_ttl = -1", [], "lease_ttl must be a number of seconds > 0"),
        ("metrics_port = 99999", [], "metrics_port must be a port number"),
        ('metrics_addr = "localhost"', [], "metrics_addr must be HOST:PORT"),
        ("", ["--metrics-port", "99999"], "--metrics-port: must be a port from 0 to 65535"),
        ("", ["--metrics-addr", "127.0.0.1:70000"], "port must be from 0 to 65535"),
        ("", ["--metrics-addr", "127.0.0.1:9464", "--metrics-port", "9464"], "not both"),
        ("", ["--session", "s-1@"], "channel id"),
        ("", ["--interval", "inf"], "--interval: must be a positive number"),
    ],
)
async def test_settings_that_cannot_work_are_usage_errors_naming_the_setting(
    emu: Emulator, tmp_path: Path, config: str, flags: list[str], message: str
) -> None:
    path = tmp_path / "relay.toml"
    path.write_text(f'sink = "-"\nsessions = ["s-1"]\n{config}\n')
    status, out, err = await finish(await relay(emu, "--config", str(path), *flags), timeout=20)
    assert status == 2, err
    assert message in err and "Traceback" not in err and "unexpected" not in err and out == ""


async def lines_until(proc: asyncio.subprocess.Process, start: str, timeout: float = 20) -> list[str]:
    """Lines of the relay's stderr up to the first that starts with ``start``."""
    assert proc.stderr is not None
    seen: list[str] = []
    while not (seen and seen[-1].startswith(start)):
        line = (await asyncio.wait_for(proc.stderr.readline(), timeout)).decode()
        assert line, f"stderr closed before a line starting {start!r}: {seen}"
        seen.append(line)
    return seen


async def test_a_sink_file_in_a_missing_folder_is_created(emu: Emulator, tmp_path: Path) -> None:
    channel_id, sid = live_session(emu)
    out_file = tmp_path / "not" / "yet" / "there.jsonl"
    proc = await relay(emu, "--sink", f"file:{out_file}", "--session", sid)
    run_course(emu, channel_id)
    status, _, err = await finish(proc)
    assert status == 0, err
    assert json.loads(out_file.read_text().splitlines()[-1])["kind"] == "ended"


async def test_it_says_on_start_what_it_watches_and_where_records_go_without_credentials(
    emu: Emulator, tmp_path: Path
) -> None:
    async def hook(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        _, sid = live_session(emu)
        port = runner.addresses[0][1]
        url = f"http://hookuser:HOOK-PASSWORD@127.0.0.1:{port}/hook?token=Q-TOKEN"
        store = tmp_path / "state" / "cursors.json"
        proc = await relay(emu, "--sink", url, "--store", f"file:{store}", "--session", sid, "--channel", "c-1")
        before = await lines_until(proc, "relay: watching")
        first = before[-1]
        proc.send_signal(signal.SIGTERM)
        status, _, err = await finish(proc)
        err = "".join(before) + err
    finally:
        await runner.cleanup()
    assert status == 0, err
    assert first.startswith("relay: watching 1 session and 1 channel;")
    assert f"sink http://127.0.0.1:{port}/hook (unsigned)" in first
    assert f"store file:{store}" in first and f"rejected records to file:{store.parent / 'rejected.jsonl'}" in first
    assert "HOOK-PASSWORD" not in first + err and "Q-TOKEN" not in first + err and "hookuser" not in first + err
    assert "unsigned records" in err, "a webhook without a secret is said so once"
    assert err.count("unsigned records") == 1


async def test_metrics_on_an_address_of_ones_choosing(emu: Emulator) -> None:
    import aiohttp

    _, sid = live_session(emu)
    proc = await relay(emu, "--sink", "-", "--session", sid, "--metrics-addr", "127.0.0.1:0")
    first = (await lines_until(proc, "relay: watching"))[-1]
    match = re.search(r"metrics on (http://127\.0\.0\.1:(\d+)/metrics)", first)
    assert match and match.group(2) != "0", first
    async with aiohttp.ClientSession() as http, http.get(match.group(1)) as response:
        assert response.status == 200
        assert "sigma_relay_transitions_delivered_total" in await response.text()
    proc.send_signal(signal.SIGTERM)
    status, _, err = await finish(proc)
    assert status == 0, err


async def test_a_mistyped_option_shows_the_relays_own_usage(emu: Emulator) -> None:
    status, _, err = await finish(await relay(emu, "--snk", "-", "--session", "s-1"))
    assert status == 2
    assert "usage: sigma-async relay" in err and "--snk" in err


async def test_a_session_given_with_its_channel_has_records_that_carry_it(emu: Emulator) -> None:
    channel_id, sid = live_session(emu)
    proc = await relay(emu, "--sink", "-", "--session", f"{sid}@{channel_id}")
    run_course(emu, channel_id)
    status, out, err = await finish(proc)
    assert status == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert records and {r["channel_id"] for r in records} == {channel_id}


async def rejecting_receiver() -> tuple[web.AppRunner, str]:
    async def hook(request: web.Request) -> web.Response:
        record = json.loads(await request.read())
        return web.Response(status=422, text="no such kind") if record["kind"] == "interrupted" else web.Response()

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/hook"


@pytest.mark.parametrize("where", ["beside the file store", "stderr with memory:", "--dead-letter"])
async def test_rejected_records_go_to_the_dead_letter(emu: Emulator, tmp_path: Path, where: str) -> None:
    runner, url = await rejecting_receiver()
    try:
        channel_id, sid = live_session(emu)
        args = {
            "beside the file store": ["--store", f"file:{tmp_path / 'state' / 'cursors.json'}"],
            "stderr with memory:": [],
            "--dead-letter": ["--dead-letter", f"file:{tmp_path / 'dl' / 'bad.jsonl'}"],
        }[where]
        proc = await relay(emu, "--sink", url, "--session", sid, *args, env={"SIGMA_WEBHOOK_SECRET": SECRET})
        run_course(emu, channel_id)
        status, _, err = await finish(proc)
    finally:
        await runner.cleanup()
    assert status == 0, err
    if where == "stderr with memory:":
        lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    else:
        path = tmp_path / ("state/rejected.jsonl" if where == "beside the file store" else "dl/bad.jsonl")
        lines = [json.loads(line) for line in path.read_text().splitlines()]
    (entry,) = lines
    assert entry["status"] == 422 and entry["answer"] == "no such kind" and entry["record"]["kind"] == "interrupted"
    assert "1 rejected (1 to" in err
