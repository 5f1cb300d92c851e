"""A loopback HTTP origin for playback tests: answers each path with its handler, and records every request."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Origin:
    """``routes`` maps a path to its handler (anything else: 404); ``seen`` holds (path, headers) of each request."""

    url: str = ""
    routes: dict[str, Handler] = field(default_factory=dict)
    seen: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def count(self, path: str) -> int:
        return sum(1 for p, _ in self.seen if p == path)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append((request.path, dict(request.headers)))
        handler = self.routes.get(request.path)
        if handler is None:
            raise web.HTTPNotFound()
        return await handler(request)


@contextlib.asynccontextmanager
async def serve(origin: Origin) -> AsyncIterator[Origin]:
    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", origin._handle)
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.25, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    origin.url = f"http://{host}:{port}"
    try:
        yield origin
    finally:
        for _ in range(3):  # let accepted connections register before the listener closes
            await asyncio.sleep(0)
        await runner.cleanup()
