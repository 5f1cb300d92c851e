"""Start and stop a benchmark server in its own process, and read how much CPU it has used."""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import IO, Final

__all__ = ["ServerProcess", "canned_server", "emulator_server", "standalone_emulator"]

_URL_RE: Final = re.compile(r"http://[0-9.:\[\]a-fA-F]+")
_START_TIMEOUT: Final = 30.0


class ServerProcess:
    """``python -m MODULE --port 0 ...`` in a child process; ``url`` is read from the first line it prints.

    >>> with canned_server() as server:
    ...     print(server.url, server.cpu_seconds())
    """

    def __init__(self, module: str, *args: str) -> None:
        self.command = [sys.executable, "-m", module, "--host", "127.0.0.1", "--port", "0", *args]
        self.url = ""
        self._process: subprocess.Popen[str] | None = None
        self._stderr: IO[str] | None = None

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("the server is not running")
        return self._process.pid

    def start(self) -> ServerProcess:
        # stderr goes to a file: a pipe nobody reads could fill and stall the server mid-benchmark.
        self._stderr = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed in stop(), it outlives this call
        cwd = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        self._process = subprocess.Popen(
            self.command, stdout=subprocess.PIPE, stderr=self._stderr, stdin=subprocess.DEVNULL, text=True, cwd=cwd
        )
        line = self._first_line(_START_TIMEOUT)
        match = _URL_RE.search(line)
        if match is None:
            self.stop()
            raise RuntimeError(f"{' '.join(self.command[2:4])} did not start: {line!r} {self._errors()}")
        self.url = match.group(0)
        return self

    def _first_line(self, timeout: float) -> str:
        assert self._process is not None and self._process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self._process.stdout, selectors.EVENT_READ)
            if not selector.select(timeout):
                return f"(nothing printed within {timeout:g} s)"
        return self._process.stdout.readline()

    def _errors(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read()[-2000:]

    def cpu_seconds(self) -> float | None:
        """User + system CPU time the server process has used so far (Linux ``/proc``), or None elsewhere."""
        try:
            with open(f"/proc/{self.pid}/stat") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except (OSError, RuntimeError):
            return None
        # Fields 14 and 15 of proc(5) (utime, stime), counted after the ")" that closes the command name.
        ticks = int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        if process is not None and process.stdout is not None:
            process.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def canned_server(latency: float = 0.0) -> ServerProcess:
    """The canned-response server (``benchmarks._canned``), holding each answer back ``latency`` seconds."""
    return ServerProcess("benchmarks._canned", "--latency", repr(latency))


def emulator_server(latency: float = 0.0) -> ServerProcess:
    """The emulator with the benchmark's control routes (``benchmarks._emulator_server``), holding each API
    answer back ``latency`` seconds."""
    return ServerProcess("benchmarks._emulator_server", "--latency", repr(latency))


@contextmanager
def standalone_emulator(command: Sequence[str]) -> Iterator[tuple[str, dict[str, str]]]:
    """``python COMMAND``, an emulator that prints ``listening on URL username=U app_id=A secret_key=K`` when ready,
    in its own process; yields its URL and the credentials from that line."""
    proc = subprocess.Popen(
        [sys.executable, *command], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parent.parent
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        found = re.search(r"listening on (\S+) username=(\S+) app_id=(\S+) secret_key=(\S+)", line)
        if found is None:
            raise RuntimeError(f"the emulator did not start: {line!r}")
        url, username, app_id, secret_key = found.groups()
        yield url, {"username": username, "app_id": app_id, "secret_key": secret_key}
    finally:
        proc.terminate()
        proc.wait(timeout=10)
