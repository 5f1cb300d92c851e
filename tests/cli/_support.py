"""Running the ``sigma-async`` command as a user runs it: in a subprocess, with its output read line by line."""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

__all__ = ["ENTRY_POINT", "S3_SECRET", "UUID", "Lines", "Server", "clean_env", "json_lines", "ok", "one_error_line",
           "run"]

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
