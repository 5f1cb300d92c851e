"""The standalone emulator the command-line tests talk to, in its own process like any real service."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from ._support import Lines, Server, clean_env


@pytest.fixture(scope="session")
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
