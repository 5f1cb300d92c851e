"""A canned-response HTTP/1.1 server for throughput runs: ``python -m benchmarks._canned --port 0 [--latency S]``.

It is a bare ``asyncio.Protocol`` on uvloop (when installed) rather than ``aiohttp.web``: ``aiohttp.web`` spends
about as much CPU per request as the clients under test do, and on a small machine the server would then set the
pace. Here a request costs the server a few microseconds, so throughput measures the client.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence
from typing import Final, cast

from ._loops import best_loop, run_on
from ._payloads import channel_body, create_body, session_page_body

__all__ = ["main"]

_PREFIX: Final = b"/api/livestream/"
_MAX_HEAD: Final = 64 * 1024


def _response(status: str, body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\n"
        "Content-Type: application/json; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        # A fixed id: real servers send one and the clients read it, so its parsing is part of every call.
        "X-Request-Id: 00000000-0000-4000-8000-000000000000\r\n"
        "\r\n"
    )
    return head.encode("ascii") + body


class _Routes:
    """The four answers the benchmarks need, encoded once."""

    def __init__(self) -> None:
        self.channel = _response("200 OK", channel_body())
        self.created = _response("201 Created", create_body())
        self.sessions = _response("200 OK", session_page_body())
        self.missing = _response("404 Not Found", b'{"statusCode":404,"message":"Not Found","error":"Not Found"}')

    def answer(self, method: bytes, target: bytes) -> bytes:
        if not target.startswith(_PREFIX):
            return self.missing
        resource = target[len(_PREFIX) :]
        if method == b"GET" and resource.startswith(b"channels/"):
            return self.channel
        if method == b"GET" and resource.startswith(b"sessions?"):
            return self.sessions
        if method == b"POST" and resource == b"channels":
            return self.created
        return self.missing


class _HttpProtocol(asyncio.Protocol):
    """Keep-alive HTTP/1.1: reads each request head (and its Content-Length body) and writes a canned answer."""

    def __init__(self, routes: _Routes, latency: float) -> None:
        self._routes = routes
        self._latency = latency
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, but have its methods.
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        # A client may send several requests at once (pipelining) or one in many pieces: answer each whole one.
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > _MAX_HEAD and self._transport is not None:
                    self._transport.close()
                return
            head = bytes(buffer[:end])
            total = end + 4 + _content_length(head)
            if len(buffer) < total:
                return
            del buffer[:total]
            method, _, rest = head.partition(b" ")
            target = rest.partition(b" ")[0]
            response = self._routes.answer(method, target)
            if self._latency:
                # Answers on one connection keep their order: every delay is the same.
                self._loop.call_later(self._latency, self._write, response)
            else:
                self._write(response)

    def _write(self, response: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(response)


def _content_length(head: bytes) -> int:
    lower = head.lower()
    at = lower.find(b"\r\ncontent-length:")
    if at < 0:
        return 0
    line_end = lower.find(b"\r\n", at + 2)
    value = lower[at + 17 : line_end if line_end > 0 else None]
    return int(value.strip() or 0)


async def serve(host: str, port: int, latency: float) -> None:
    """Serve until SIGTERM/SIGINT, after printing ``canned server listening on http://HOST:PORT``."""
    loop = asyncio.get_running_loop()
    routes = _Routes()
    server = await loop.create_server(lambda: _HttpProtocol(routes, latency), host, port, backlog=1024)
    bound = server.sockets[0].getsockname()
    print(f"canned server listening on http://{bound[0]}:{bound[1]}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._canned", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds to hold each answer back")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    args = parser.parse_args(argv)
    # The server's own loop: uvloop when installed, whatever loop the clients under test use.
    run_on(best_loop() if args.loop == "uvloop" else "asyncio", serve(args.host, args.port, args.latency))
    return 0


if __name__ == "__main__":
    sys.exit(main())
