"""A loopback HTTP server that records every request and answers from a script, for transport-level tests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    @property
    def q(self) -> Any:
        return json.loads(self.query["q"])

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    body: bytes | str | Any = b"{}"
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False  # never answer (until the client gives up)
    drop: bool = False  # close the connection without an answer
    chunks: int = 0  # stream the body in this many chunked writes (no Content-Length)...
    chunk_delay: float = 0.0  # ... pausing this long between them (a slow-loris server)


class Recorder:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.replies: list[Reply] = []
        self.default = Reply()
        self.url = ""

    def reply(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(
            Recorded(request.method, request.path, dict(request.query), dict(request.headers), body)
        )
        reply = self.replies.pop(0) if self.replies else self.default
        if reply.hang:
            await asyncio.Event().wait()
        if reply.drop:
            assert request.transport is not None
            request.transport.close()
            raise asyncio.CancelledError  # aiohttp treats the closed transport as a dropped request
        payload = reply.body
        if not isinstance(payload, (bytes, str)):
            payload = json.dumps(payload)
        data = payload.encode() if isinstance(payload, str) else payload
        headers = {"Content-Type": "application/json", **reply.headers}
        if not reply.chunks:
            return web.Response(status=reply.status, body=data, headers=headers)
        stream = web.StreamResponse(status=reply.status, headers=headers)
        stream.enable_chunked_encoding()
        await stream.prepare(request)
        size = -(-len(data) // reply.chunks)
        for start in range(0, len(data), size):
            await stream.write(data[start : start + size])
            if reply.chunk_delay:
                await asyncio.sleep(reply.chunk_delay)  # the server's pace, not a test's synchronisation
        await stream.write_eof()
        return stream


@asynccontextmanager
async def recording_server() -> AsyncIterator[Recorder]:
    recorder = Recorder()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", recorder.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    recorder.url = f"http://127.0.0.1:{port}"
    try:
        yield recorder
    finally:
        await runner.cleanup()
