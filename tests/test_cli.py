"""The ``sigma-async`` command line, run as a user runs it: in a subprocess, against an emulator in another."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest

from sigma_async import cli, decode_transition
from sigma_async.testing import Emulator, Fault

ENTRY_POINT = Path(sys.executable).with_name("sigma-async")
S3_SECRET = "s3-secret-NEVER-PRINTED"
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


class Lines:
    """A child's output stream read line by line in a thread, so a test can wait for a line with a deadline."""

    def __init__(self, stream: IO[str]) -> None:
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def expect(self, pattern: str, timeout: float = 15.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r} within {timeout}s; saw {self.seen}") from None
            if line is None:
                raise AssertionError(f"stream closed before a line matching {pattern!r}; saw {self.seen}")
            self.seen.append(line)
            if match := re.search(pattern, line):
                return match

    def rest(self, timeout: float = 15.0) -> list[str]:
        """Every line, once the stream has closed."""
        self._thread.join(timeout)
        while not self._queue.empty() and (line := self._queue.get_nowait()) is not None:
            self.seen.append(line)
        return self.seen


@dataclass
class Server:
    url: str
    env: dict[str, str]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGMA_")}
    env.update(PYTHONIOENCODING="utf-8", COLUMNS="200", **extra)
    return env


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    """A standalone emulator, in its own process like any service the CLI would talk to."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "sigma_async.testing", "--port", "0", "--seed", "7"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env(),
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    try:
        url = Lines(proc.stdout).expect(r"listening on (http://\S+)").group(1)
        env = clean_env(
            SIGMA_BASE_URL=url, SIGMA_USERNAME="emulator", SIGMA_SECRET_KEY="emulator-secret",
            SIGMA_APP_ID="emulator-app",
        )  # fmt: skip
        yield Server(url, env)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
        proc.stdout.close()
        proc.stderr.close()


def run(
    server: Server | None, *args: str, stdin: str | None = None, env: Mapping[str, str] | None = None,
    entry_point: bool = False, timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    command = [str(ENTRY_POINT)] if entry_point else [sys.executable, "-m", "sigma_async"]
    environment = dict(env if env is not None else (server.env if server else clean_env()))
    return subprocess.run(
        [*command, *args], input=stdin, capture_output=True, text=True, env=environment, timeout=timeout
    )


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result


def json_lines(text: str) -> list[Any]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def one_error_line(result: subprocess.CompletedProcess[str], code: int = 1) -> str:
    """The run failed with ``code`` and said so in exactly one line of stderr, without a traceback."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


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
    sid = started["currentSessionId"]
    assert re.fullmatch(UUID, sid)
    assert ok(run(server, "sessions", "status", sid)).stdout.strip() == "initializing"
    assert json.loads(ok(run(server, "sessions", "status", sid, "--json")).stdout) == {"status": "initializing"}

    ok(run(server, "channels", "stop", cid))
    assert ok(run(server, "sessions", "status", sid)).stdout.strip() == "ended"
    events = json_lines(ok(run(server, "events", "list", sid, "--json")).stdout)
    assert [e["action"] for e in events] == ["ended", "stop", "initialize"]  # newest first, as the API sorts
    table = ok(run(server, "events", "list", sid)).stdout.splitlines()
    assert table[0].split() == ["time", "action", "actor", "message", "event"] and "ended" in table[1]
    sessions = json_lines(ok(run(server, "sessions", "list", cid, "--json")).stdout)
    assert [(s["id"], s["status"]) for s in sessions] == [(sid, "ended")]

    assert json.loads(ok(run(server, "channels", "delete", cid, "--json")).stdout) == {"id": cid, "deleted": True}
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
    assert all(row.split()[1] == "ended" for row in rows[1:])


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
    sid = json.loads(ok(run(server, "--json", "channels", "start", cid)).stdout)["currentSessionId"]
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


# -- credentials, errors, usage ---------------------------------------------------------------------------------


def test_bad_credentials_fail_in_one_line_without_the_secret(server: Server) -> None:
    wrong = "wrong-secret-0123456789"
    by_flag = run(server, "--secret-key", wrong, "channels", "get", "anything")
    line = one_error_line(by_flag)
    assert line.startswith("error: HTTP 401: ") and "(AuthenticationError)" in line
    by_env = run(server, "channels", "get", "anything", env={**server.env, "SIGMA_SECRET_KEY": wrong})
    one_error_line(by_env)
    for result in (by_flag, by_env):
        assert wrong not in result.stdout + result.stderr

    missing = run(None, "channels", "get", "anything", env=clean_env())
    assert "SIGMA_USERNAME" in one_error_line(missing, code=2)


def test_credentials_from_an_env_file(server: Server, tmp_path: Path) -> None:
    env_file = tmp_path / "sigma.env"
    # As the console's "Download as .env file" writes it: no SIGMA_ prefix needed in the file.
    env_file.write_text(f"USERNAME=emulator\nSECRET_KEY=emulator-secret\nAPP_ID=emulator-app\nBASE_URL={server.url}\n")
    created = ok(run(None, "--env-file", str(env_file), "channels", "create", "--name", "from-file", "--json",
                     env=clean_env()))  # fmt: skip
    assert json.loads(created.stdout)["name"] == "from-file"
    missing = run(None, "--env-file", str(tmp_path / "absent.env"), "channels", "get", "x", env=clean_env())
    assert "cannot read env file" in one_error_line(missing, code=2)


@pytest.mark.parametrize(
    "args",
    [
        [], ["channels"], ["channels", "list", "x"], ["watch"], ["watch", "s", "--channel", "c"],
        ["watch", "--channel", "c", "--since", "cursor"], ["sessions", "list", "c", "--limit", "0"],
        ["channels", "get", "x", "--bogus"], ["watch", "s", "--interval", "-1"],
    ],
)  # fmt: skip
def test_usage_errors_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(args)
    assert exited.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_usage_errors_in_a_real_process(server: Server) -> None:
    result = run(server, "channels", "list")
    assert result.returncode == 2 and "usage:" in result.stderr and "Traceback" not in result.stderr
    bad_id = one_error_line(run(server, "channels", "get", "not/an/id"), code=2)
    assert "not a valid id" in bad_id
    half_s3 = run(server, "channels", "create", "--name", "x", "--s3-bucket", "b")
    assert "--s3-access-key" in one_error_line(half_s3, code=2)
    helped = ok(run(server, "--help"))
    assert "no endpoint that lists channels" in helped.stdout and "sigma-async demo" in helped.stdout


def test_verbose_logs_requests_but_never_the_secret(server: Server) -> None:
    result = run(server, "-vv", "channels", "get", "no-such-channel")
    assert result.returncode == 1
    assert "DEBUG sigma_async: GET /api/livestream/channels/no-such-channel" in result.stderr
    assert "emulator-secret" not in result.stderr and "Traceback" not in result.stderr


# -- emulator and demo ------------------------------------------------------------------------------------------


def test_emulator_subcommand_serves_until_interrupted() -> None:
    proc = subprocess.Popen(
        [str(ENTRY_POINT), "emulator", "--port", "0", "--username", "ops", "--secret-key", "ops-key",
         "--app-id", "ops-app", "--speed", "10"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env(),
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    try:
        url = Lines(proc.stdout).expect(r"listening on (http://\S+) username=ops app_id=ops-app").group(1)
        env = clean_env(SIGMA_BASE_URL=url, SIGMA_USERNAME="ops", SIGMA_SECRET_KEY="ops-key", SIGMA_APP_ID="ops-app")
        created = json.loads(ok(run(None, "--json", "channels", "create", "--name", "e", env=env)).stdout)
        assert created["appId"] == "ops-app"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
    finally:
        proc.kill() if proc.poll() is None else None
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()


@pytest.mark.parametrize(("flag", "value"), [("--port", "99999"), ("--speed", "0"), ("--port", "many")])
def test_emulator_subcommand_refuses_bad_values_as_usage_errors(flag: str, value: str) -> None:
    result = run(None, "emulator", flag, value, env=clean_env(), timeout=30)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and flag in result.stderr


def test_demo_runs_a_session_to_its_end_in_seconds() -> None:
    began = time.monotonic()
    result = ok(run(None, "demo", "--channels", "4", env=clean_env(), timeout=60))
    assert time.monotonic() - began < 30
    out = result.stdout
    for kind in ("initializing", "stable", "interrupted", "restored", "stopped", "ended"):
        assert re.search(rf"^\s+\+\d\d:\d\d  {kind}\b", out, re.M), (kind, out)
    assert re.search(rf"https://s3\.example\.com/demo-vod/sigma-livestream/{UUID}/catchup/master-catchup\.m3u8", out)
    assert "deleted 4 channels" in out and "demo-secret-key" not in out

    as_json = json_lines(ok(run(None, "demo", "--channels", "2", "--json", env=clean_env(), timeout=60)).stdout)
    *transitions, summary = as_json
    assert [t["kind"] for t in transitions][-1] == "ended"
    assert summary["catchupPlaylistUrl"].endswith(f"/{summary['sessionId']}/catchup/master-catchup.m3u8")
    assert summary["deleted"] == 2
