"""Each command of ``sigma-async``, run in a subprocess against an emulator in another."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from sigma_async import cli, decode_transition
from sigma_async.testing import Emulator, Fault

from ._support import ENTRY_POINT, S3_SECRET, UUID, Lines, Server, clean_env, json_lines, ok, one_error_line, run

# -- channels ---------------------------------------------------------------------------------------------------


def test_a_channel_from_create_to_delete(server: Server) -> None:
    assert ENTRY_POINT.exists(), "the console script is installed next to the interpreter"
    env = {**server.env, "SIGMA_S3_SECRET_KEY": S3_SECRET}
    created = ok(run(
        server, "--json", "channels", "create", "--name", "news", "--tag", "a", "--tag", "b", "--stop-timeout", "45",
        "--s3-access-key", "AK", "--s3-bucket", "vod", "--s3-endpoint", "https://s3.example.com",
        "--s3-region", "r1", env=env, entry_point=True,
    ))  # fmt: skip
    channel = json.loads(created.stdout)
    cid = channel["id"]
    assert (channel["name"], channel["tags"], channel["stopTimeout"]) == ("news", ["a", "b"], 45)
    assert channel["destinationCatchup"]["s3"]["bucket"] == "vod"
    assert channel["destinationCatchup"]["s3"]["secretKey"] == "***"
    assert S3_SECRET not in created.stdout + created.stderr

    shown = ok(run(server, "channels", "get", cid)).stdout
    assert re.search(rf"^id:\s+{cid}$", shown, re.M)
    assert f"stream key:      {channel['input']['streamToken']}" in shown  # an encoder needs it
    assert "s3 https://s3.example.com/vod (r1)" in shown and S3_SECRET not in shown

    started = json.loads(ok(run(server, "channels", "start", cid, "--json")).stdout)
    sid = started["session_id"]
    assert started == {"channel_id": cid, "action": "start", "ok": True, "session_id": sid}
    assert re.fullmatch(UUID, sid)
    assert ok(run(server, "sessions", "status", sid)).stdout.strip() == "initializing"
    assert json.loads(ok(run(server, "sessions", "status", sid, "--json")).stdout) == {"status": "initializing"}

    stopped = json.loads(ok(run(server, "channels", "stop", cid, "--json")).stdout)
    assert stopped == {"channel_id": cid, "action": "stop", "ok": True}  # the same shape as start's
    assert ok(run(server, "sessions", "status", sid)).stdout.strip() == "ended"
    events = json_lines(ok(run(server, "events", "list", sid, "--json")).stdout)
    assert [e["action"] for e in events] == ["ended", "stop", "initialize"]  # newest first, as the API sorts
    table = ok(run(server, "events", "list", sid)).stdout.splitlines()
    assert table[0].split() == ["time", "action", "actor", "message", "event"] and "ended" in table[1]
    sessions = json_lines(ok(run(server, "sessions", "list", cid, "--json")).stdout)
    assert [(s["id"], s["status"]) for s in sessions] == [(sid, "ended")]

    deleted = json.loads(ok(run(server, "channels", "delete", cid, "--json")).stdout)
    assert deleted == {"channel_id": cid, "action": "delete", "ok": True}
    gone = one_error_line(run(server, "channels", "get", cid))
    assert "HTTP 404" in gone and "(NotFoundError)" in gone


def test_sessions_list_shows_every_session_or_stops_at_the_limit(server: Server) -> None:
    cid = json.loads(ok(run(server, "--json", "channels", "create", "--name", "many-sessions")).stdout)["id"]
    for _ in range(2):
        ok(run(server, "channels", "start", cid))
        ok(run(server, "channels", "stop", cid))
    assert len(json_lines(ok(run(server, "sessions", "list", cid, "--json")).stdout)) == 2
    assert len(json_lines(ok(run(server, "sessions", "list", cid, "--json", "--limit", "1")).stdout)) == 1
    rows = ok(run(server, "sessions", "list", cid)).stdout.splitlines()
    assert rows[0].split() == ["session", "status", "started", "finished", "duration"] and len(rows) == 3
    # Never on air (no publisher): no start time to show, though the session was created and finished.
    for row in rows[1:]:
        _, status, started, *finished = row.split()
        assert (status, started) == ("ended", "-") and re.match(r"\d{4}-\d\d-\d\d", finished[0]), row


def test_create_many_creates_the_valid_items_and_reports_the_invalid_one(server: Server, tmp_path: Path) -> None:
    specs = [
        {"name": "bulk-a", "stopTimeout": 60},
        {"name": "bulk-b", "destinationCatchup": {"accessKey": "AK", "bucket": "vod", "endpoint": "https://s3.example.com", "region": "r1"}},  # noqa: E501
        {"name": ""},
        {"name": "bulk-d", "tags": ["x"]},
    ]  # fmt: skip
    spec_file = tmp_path / "channels.json"
    spec_file.write_text(json.dumps(specs))
    failures_file = tmp_path / "failures.jsonl"
    env = {**server.env, "SIGMA_S3_SECRET_KEY": S3_SECRET}

    result = run(
        server, "channels", "create-many", str(spec_file), "--concurrency", "2", "--rate-limit", "50",
        "--failures-out", str(failures_file), env=env,
    )  # fmt: skip

    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and S3_SECRET not in result.stdout + result.stderr
    assert json_lines(failures_file.read_text()) == [
        {"index": 2, "name": "", "error": "InvalidSpec", "status": None,
         "message": "channel name must be a non-empty string"},
    ]  # fmt: skip
    rows = dict(re.findall(rf"^\d+\s+(\S+)\s+({UUID})$", result.stdout, re.M))
    assert set(rows) == {"bulk-a", "bulk-b", "bulk-d"}
    assert "created 3 of 4 channels; 1 failed" in result.stdout
    fetched = json.loads(ok(run(server, "channels", "get", rows["bulk-b"], "--json")).stdout)
    assert fetched["name"] == "bulk-b" and fetched["catchup"] is True

    # JSON lines on stdin, --json out: one object per item in input order, failures also on stderr by default.
    lines = "\n".join(json.dumps(s) for s in specs[2:]) + "\n"
    piped = run(server, "--json", "channels", "create-many", "-", stdin=lines)
    assert piped.returncode == 1
    assert [(r["index"], r["ok"]) for r in json_lines(piped.stdout)] == [(0, False), (1, True)]
    assert json_lines(piped.stderr) == [{**json_lines(failures_file.read_text())[0], "index": 0}]


def test_create_many_reports_a_server_rejection_in_its_slot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async def scenario() -> tuple[int, Emulator]:
        async with Emulator(manual_clock=True) as emu:
            emu.faults.add("POST /channels", Fault(status=422, message="channel name already used"))
            spec_file = tmp_path / "one.jsonl"
            spec_file.write_text('{"name": "taken"}\n')
            args = [
                "--base-url", emu.url, "--username", emu.username, "--secret-key", emu.secret_key,
                "--app-id", emu.app_id, "channels", "create-many", str(spec_file),
            ]  # fmt: skip
            # The CLI runs its own event loop: in a thread, while this loop serves the emulator.
            return await asyncio.to_thread(cli.main, args), emu

    code, emu = asyncio.run(scenario())
    captured = capsys.readouterr()
    assert code == 1
    assert json_lines(captured.err) == [
        {"index": 0, "name": "taken", "error": "UnprocessableEntityError", "status": 422,
         "message": "channel name already used"},
    ]  # fmt: skip
    assert emu.channels == {} and emu.journal.count("POST /channels") == 1


def test_create_many_dry_run_sends_nothing(server: Server) -> None:
    result = run(server, "channels", "create-many", "-", "--dry-run", stdin='{"name": "x"}\n{"name": "y", "oops": 1}\n')
    assert result.returncode == 1
    assert "dry run: nothing was sent" in result.stdout and "unknown field oops" in result.stdout
    unreadable = one_error_line(run(server, "channels", "create-many", "/no/such/file.json"), code=2)
    assert "cannot read /no/such/file.json" in unreadable


# -- watch ------------------------------------------------------------------------------------------------------


def test_watch_prints_json_lines_until_the_session_ends(server: Server) -> None:
    cid = json.loads(ok(run(server, "--json", "channels", "create", "--name", "watched")).stdout)["id"]
    sid = json.loads(ok(run(server, "--json", "channels", "start", cid)).stdout)["session_id"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "sigma_async", "watch", sid, "--json", "--interval", "0.1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=server.env,
    )  # fmt: skip
    assert proc.stdout is not None
    lines = Lines(proc.stdout)
    try:
        lines.expect('"kind":"initializing"')
        ok(run(server, "channels", "stop", cid))  # the CLI itself ends the session it is watching
        lines.expect('"kind":"ended"')
        _, err = proc.communicate(timeout=15)
    finally:
        proc.kill() if proc.poll() is None else None
        proc.wait()
    assert proc.returncode == 0 and "Traceback" not in err
    transitions = [decode_transition(line) for line in lines.rest()]
    assert [t.kind for t in transitions] == ["initializing", "stopped", "ended"]
    assert {t.session_id for t in transitions} == {sid}

    # Resuming after the first transition repeats nothing; the session has ended, so it returns at once.
    resumed = ok(run(server, "watch", sid, "--json", "--since", transitions[0].cursor, "--interval", "0.1"))
    assert [decode_transition(x).kind for x in resumed.stdout.splitlines()] == ["stopped", "ended"]
    human = ok(run(server, "watch", sid, "--interval", "0.1")).stdout.splitlines()
    assert [line.split()[3] for line in human] == ["initializing", "stopped", "ended"]
    assert all(line.split()[2] == sid[:8] for line in human)


def test_watching_a_channel_or_a_session_that_does_not_exist_fails_at_once(server: Server) -> None:
    for what in (["--channel", "no-such-channel"], ["no-such-session"]):
        result = run(server, "watch", *what, "--interval", "0.1", timeout=30)
        assert result.returncode == 1 and "Traceback" not in result.stderr
        error = result.stderr.strip().splitlines()[-1]
        assert error.startswith("error: HTTP 404") and "(NotFoundError)" in error


def test_ctrl_c_ends_a_watch_quietly_with_130(server: Server) -> None:
    cid = json.loads(ok(run(server, "--json", "channels", "create", "--name", "idle")).stdout)["id"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "sigma_async", "watch", "--channel", cid, "--interval", "0.1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=server.env,
    )  # fmt: skip
    assert proc.stderr is not None
    try:
        Lines(proc.stderr).expect(f"watching channel {cid}")
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=15)
    finally:
        proc.kill() if proc.poll() is None else None
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            assert stream is not None
            stream.close()
    assert proc.returncode == 130


def test_watch_against_an_unreachable_server_warns_once_and_can_give_up() -> None:
    with socket.socket() as probe:  # a loopback port with nothing listening
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    env = clean_env(SIGMA_BASE_URL=url, SIGMA_USERNAME="u", SIGMA_SECRET_KEY="k-NEVER-PRINTED", SIGMA_APP_ID="a")
    proc = subprocess.Popen(
        [sys.executable, "-m", "sigma_async", "watch", "some-session", "--interval", "0.1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    assert proc.stderr is not None
    try:
        err = Lines(proc.stderr)
        # Without -v, a watch that cannot reach its server says so rather than print nothing for ever.
        warning = err.expect(r"^warning: ", timeout=30).string
        assert "APIConnectionError" in warning and "--max-silence" in warning and "NEVER-PRINTED" not in warning
        assert proc.poll() is None  # ... and keeps trying
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 130
        assert [line for line in err.rest() if line.startswith("warning:")] == [warning]
    finally:
        proc.kill() if proc.poll() is None else None
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            assert stream is not None
            stream.close()

    began = time.monotonic()
    gave_up = run(None, "watch", "some-session", "--json", "--max-silence", "1", "--interval", "0.1", env=env)
    line = one_error_line(gave_up, code=1)
    assert "no good answer from the server" in line and "(WatchError)" in line
    assert time.monotonic() - began < 20


def test_watch_warns_once_per_outage_and_says_when_the_server_answers_again(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def scenario() -> int:
        async with Emulator(manual_clock=True) as emu:
            session = emu.start_channel(emu.create_channel("flaky").id)
            # Two polls' worth of failures (each call is retried 3 times): one outage, so one warning.
            emu.faults.add("*", Fault(status=503, retry_after=0.01), times=8)
            args = [
                "--base-url", emu.url, "--username", emu.username, "--secret-key", emu.secret_key,
                "--app-id", emu.app_id, "watch", session.id, "--interval", "0.05", "--json",
            ]  # fmt: skip
            watcher = asyncio.create_task(asyncio.to_thread(cli.main, args))
            await emu.wait_for(lambda: sum(e.status == 200 for e in emu.journal.entries()) >= 2, timeout=20)
            emu.stop_channel(session.channel_id)
            return await asyncio.wait_for(watcher, 20)

    assert asyncio.run(scenario()) == 0
    captured = capsys.readouterr()
    warning, back = captured.err.splitlines()
    assert re.fullmatch(
        r"warning: cannot poll the server \(HTTP 503: Service Unavailable \(injected\) \(ServerError\); request id "
        rf"{UUID}\); still trying \(for ever; --max-silence to give up\)", warning
    ), warning
    assert back == "the server answers again"
    assert [json.loads(line)["kind"] for line in captured.out.splitlines()][-1] == "ended"


def test_the_readme_walk_through_shows_a_session_go_live() -> None:
    """README § Command line: an emulator with --auto-publish, then create, start, watch, stop from the shell."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "sigma_async", "emulator", "--port", "0", "--auto-publish", "0.5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env(),
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    try:
        url = Lines(proc.stdout).expect(r"listening on (http://\S+)").group(1)
        server = Server(url, clean_env(SIGMA_BASE_URL=url, SIGMA_USERNAME="emulator",
                                       SIGMA_SECRET_KEY="emulator-secret", SIGMA_APP_ID="emulator-app"))  # fmt: skip
        cid = json.loads(ok(run(server, "--json", "channels", "create", "--name", "news")).stdout)["id"]
        sid = json.loads(ok(run(server, "--json", "channels", "start", cid)).stdout)["session_id"]
        watch = subprocess.Popen(
            [sys.executable, "-m", "sigma_async", "watch", sid, "--json", "--interval", "0.1"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=server.env,
        )  # fmt: skip
        assert watch.stdout is not None and watch.stderr is not None
        lines = Lines(watch.stdout)
        try:
            lines.expect('"kind":"stable"')  # the simulated encoder connected: on air
            # The control route, as the README shows it with curl: the signal drops.
            request = urllib.request.Request(f"{url}/_emulator/sessions/{cid}/interrupt", method="POST", headers={
                "Authorization": "Basic " + base64.b64encode(b"emulator:emulator-secret").decode(),
                "X-App-Id": "emulator-app",
            })  # fmt: skip
            with urllib.request.urlopen(request, timeout=10) as reply:
                assert json.loads(reply.read())["status"] == "interrupted"
            lines.expect('"kind":"interrupted"')
            ok(run(server, "channels", "stop", cid))
            lines.expect('"kind":"ended"')
            assert watch.wait(timeout=15) == 0
        finally:
            watch.kill() if watch.poll() is None else None
            watch.wait()
            watch.stdout.close()
            watch.stderr.close()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=15)
        proc.stdout.close()
        proc.stderr.close()
