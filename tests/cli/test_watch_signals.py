"""``sigma-async watch`` stopped by a process manager: SIGTERM is a request to stop, not a failure."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from ._support import Lines, Server, ok, run

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="sends POSIX signals")


@pytest.mark.parametrize("json_mode", [False, True], ids=["text", "json"])
def test_sigterm_ends_a_watch_with_a_line_and_status_0(server: Server, json_mode: bool) -> None:
    cid = json.loads(ok(run(server, "--json", "channels", "create", "--name", "terminated")).stdout)["id"]
    sid = json.loads(ok(run(server, "--json", "channels", "start", cid)).stdout)["session_id"]
    flags = ["--json"] if json_mode else []
    proc = subprocess.Popen(
        [sys.executable, "-m", "sigma_async", *flags, "watch", sid, "--interval", "0.1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=server.env,
    )  # fmt: skip
    assert proc.stderr is not None and proc.stdout is not None
    try:
        out, err = Lines(proc.stdout), Lines(proc.stderr)
        out.expect("initializing")  # the watch is running, and so is its signal handler
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert err.rest()[-1] == "sigma-async watch: stopped (SIGTERM)"
    finally:
        proc.kill() if proc.poll() is None else None
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
