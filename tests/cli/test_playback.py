"""``sigma-async playback``: a table of renditions, one JSON document, or one line per stall and resume."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request

import pytest

from ._support import Lines, Server, clean_env, json_lines, ok, one_error_line, run


def control(server: Server, path: str) -> dict[str, object]:
    """POST a control route of the standalone emulator, with its credentials."""
    request = urllib.request.Request(server.url + path, method="POST", headers={
        "Authorization": "Basic ZW11bGF0b3I6ZW11bGF0b3Itc2VjcmV0",  # emulator:emulator-secret
        "X-App-Id": "emulator-app",
    })  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as answer:
        result: dict[str, object] = json.loads(answer.read())
        return result


@pytest.fixture
def channel(server: Server) -> str:
    """A channel on air: its session has a publisher, so its HLS output advances."""
    created = json.loads(ok(run(server, "--json", "channels", "create", "--name", "playback")).stdout)
    ok(run(server, "channels", "start", created["id"]))
    control(server, f"/_emulator/sessions/{created['id']}/publish")
    return str(created["id"])


def live_url(server: Server, channel_id: str) -> str:
    return f"{server.url}/manifest/{channel_id}/master.m3u8"


def test_a_table_of_the_renditions(server: Server, channel: str) -> None:
    result = ok(run(server, "playback", channel))
    out = result.stdout
    assert "playing" in out and live_url(server, channel) in out
    rows = [line.split() for line in out.splitlines() if line.split() and line.split()[0] in {"1080p", "720p", "480p"}]
    assert [row[0] for row in rows] == ["1080p", "720p", "480p"]
    assert all(row[-1] == "playing" for row in rows)
    assert [row[1] for row in rows] == ["1920x1080", "1280x720", "854x480"]


def test_json_is_one_document(server: Server, channel: str) -> None:
    [report] = json_lines(ok(run(server, "--json", "playback", channel)).stdout)
    assert report["state"] == "playing" and report["url"] == live_url(server, channel)
    assert [(r["name"], r["state"], r["target_duration"]) for r in report["renditions"]] == [
        ("1080p", "playing", 1.0), ("720p", "playing", 1.0), ("480p", "playing", 1.0),
    ]  # fmt: skip


def test_a_url_needs_no_credentials_and_a_failing_output_exits_1(server: Server, channel: str) -> None:
    control(server, f"/_emulator/channels/{channel}/playback/fail?rendition=480p&status=503")
    try:
        result = run(None, "--json", "playback", live_url(server, channel), env=clean_env())
    finally:
        control(server, f"/_emulator/channels/{channel}/playback/resume")
    assert result.returncode == 1, result.stderr
    [report] = json_lines(result.stdout)
    assert report["state"] == "degraded"
    assert [r["error"] for r in report["renditions"]] == [None, None, "HTTP 503"]


def test_a_channel_id_without_credentials_is_a_usage_error(server: Server, channel: str) -> None:
    line = one_error_line(run(None, "playback", channel, env=clean_env()), code=2)
    assert "credentials" in line and "URL" in line


def test_an_unreachable_output_says_so_and_exits_1(server: Server) -> None:
    result = run(None, "playback", "http://127.0.0.1:9/nothing/master.m3u8", env=clean_env())
    assert result.returncode == 1 and "unreachable (unreachable)" in result.stdout
    bad = run(None, "playback", "ftp://example.com/master.m3u8", env=clean_env())
    assert bad.returncode == 2 and "channel id or an http(s) URL" in bad.stderr


def test_watch_prints_one_line_per_stall_and_resume_until_ctrl_c(server: Server, channel: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "sigma_async", "playback", channel, "--watch", "--interval", "0.2",
         "--stall-after", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=server.env,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    out, err = Lines(proc.stdout), Lines(proc.stderr)
    try:
        err.expect("watching the playback of")
        control(server, f"/_emulator/channels/{channel}/playback/stall?rendition=720p")
        stalled = out.expect(r"playback_stalled\s+(\S.*?)\s+stale$")
        assert stalled.group(1) == "720p"
        control(server, f"/_emulator/channels/{channel}/playback/resume")
        out.expect(r"playback_resumed\s+720p\s+advancing$")
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=10)
        printed, complaints = out.rest(), err.rest()
        proc.stdout.close()
        proc.stderr.close()
    assert code == 130
    assert printed and all("playback_" in line for line in printed)  # nothing but stalls and resumes
    assert "Traceback" not in "\n".join(complaints)


def test_watch_with_playback_prints_the_stall_and_the_resume_between_live_and_ended(
    server: Server, channel: str
) -> None:
    sid = json.loads(ok(run(server, "--json", "sessions", "list", channel)).stdout.splitlines()[0])["id"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "sigma_async", "watch", f"{sid}@{channel}", "--playback", "--json",
         "--interval", "0.1", "--playback-stall-after", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=server.env,
    )  # fmt: skip
    assert proc.stdout is not None
    lines = Lines(proc.stdout)
    try:
        lines.expect('"kind":"stable"')
        control(server, f"/_emulator/channels/{channel}/playback/stall")
        lines.expect('"kind":"playback_stalled"')
        stalled = json.loads(lines.seen[-1])
        control(server, f"/_emulator/channels/{channel}/playback/resume")
        lines.expect('"kind":"playback_resumed"')
        ok(run(server, "channels", "stop", channel))
        lines.expect('"kind":"ended"')
        _, err = proc.communicate(timeout=15)
    finally:
        proc.kill() if proc.poll() is None else None
        proc.wait()
    assert proc.returncode == 0 and "Traceback" not in err
    assert stalled["renditions"] == ["1080p", "720p", "480p"] and stalled["channel_id"] == channel


def test_watch_playback_without_the_sessions_channel_is_a_usage_error(server: Server, channel: str) -> None:
    result = run(server, "watch", "some-session", "--playback")
    assert result.returncode == 2 and "SESSION@CHANNEL" in result.stderr
