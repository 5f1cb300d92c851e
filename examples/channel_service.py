"""A small aiohttp web service that starts channels on request and serves their live state.

    SIGMA_USERNAME=... SIGMA_SECRET_KEY=... SIGMA_APP_ID=... python examples/channel_service.py

    POST /channels/{channel_id}/start   start the channel and begin watching it
    POST /channels/{channel_id}/stop    stop it
    GET  /channels/{channel_id}         {"channel_id", "session_id", "state", "since"}: the last transition seen

One SigmaClient and one Monitor live as long as the app: every request shares the connection pool, and the
state served is kept current by the monitor instead of by a call per request.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from sigma_async import Monitor, NotFoundError, SigmaClient, Transition

CLIENT = web.AppKey("client", SigmaClient)
MONITOR = web.AppKey("monitor", Monitor)
STATE = web.AppKey("state", dict)


def build_app(client: SigmaClient, *, interval: float = 2.0) -> web.Application:
    app = web.Application()
    app[CLIENT] = client
    app[STATE] = {}
    app.cleanup_ctx.append(lambda app: _lifetime(app, interval))
    app.router.add_post("/channels/{channel_id}/start", start)
    app.router.add_post("/channels/{channel_id}/stop", stop)
    app.router.add_get("/channels/{channel_id}", state)
    return app


async def _lifetime(app: web.Application, interval: float) -> AsyncIterator[None]:
    monitor = app[CLIENT].monitor(interval=interval, stay_open=True, on_error=lambda i, e: None)
    app[MONITOR] = monitor
    async with monitor:
        reader = asyncio.create_task(_record(monitor, app[STATE]))
        yield
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


async def _record(monitor: Monitor, states: dict[str, Transition]) -> None:
    async for t in monitor:
        if t.channel_id:
            states[t.channel_id] = t


async def start(request: web.Request) -> web.Response:
    channel_id = request.match_info["channel_id"]
    client = request.app[CLIENT]
    try:
        await client.channels.start(channel_id)
    except NotFoundError:
        raise web.HTTPNotFound(text="no such channel") from None
    except ValueError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    request.app[MONITOR].add_channel(channel_id)
    return web.json_response({"channel_id": channel_id, "started": True})


async def stop(request: web.Request) -> web.Response:
    channel_id = request.match_info["channel_id"]
    try:
        await request.app[CLIENT].channels.stop(channel_id)
    except NotFoundError:
        raise web.HTTPNotFound(text="no such channel") from None
    return web.json_response({"channel_id": channel_id, "stopped": True})


async def state(request: web.Request) -> web.Response:
    channel_id = request.match_info["channel_id"]
    last: Transition | None = request.app[STATE].get(channel_id)
    body: dict[str, Any] = {"channel_id": channel_id, "session_id": None, "state": None, "since": None}
    if last is not None:
        body.update(session_id=last.session_id, state=last.kind, since=last.at.isoformat())
    return web.json_response(body)


async def main() -> None:
    async with SigmaClient.from_env() as client:
        runner = web.AppRunner(build_app(client))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 8080).start()
        print("serving on http://127.0.0.1:8080")
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
