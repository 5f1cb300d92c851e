"""A small aiohttp web service that starts channels on request and serves their live state.

    SIGMA_USERNAME=... SIGMA_SECRET_KEY=... SIGMA_APP_ID=... python examples/channel_service.py [--port 8000]

    POST /channels/{channel_id}/start   start the channel and begin watching it
    POST /channels/{channel_id}/stop    stop it
    GET  /channels/{channel_id}         {"channel_id", "session_id", "state", "since"}: the last transition seen

Every answer is JSON. An error of the Sigma API becomes an HTTP answer of this service that says what went wrong
(404 no such channel, 409 already started or not started, 400 a malformed id, 502/503/504 the API failing),
never a 500 with a traceback.

One SigmaClient and one Monitor live as long as the app: every request shares the connection pool, and the
state served is kept current by the monitor instead of by a call per request.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

from sigma_async import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    ConflictError,
    Monitor,
    NotFoundError,
    RateLimitError,
    SigmaClient,
    SigmaError,
    Transition,
)

#: Not 8080: that is where the README runs the emulator this service talks to.
DEFAULT_PORT = 8000

CLIENT = web.AppKey("client", SigmaClient)
MONITOR = web.AppKey("monitor", Monitor)
STATE = web.AppKey("state", dict)


def build_app(client: SigmaClient, *, interval: float = 2.0) -> web.Application:
    app = web.Application(middlewares=[sdk_errors_as_http])
    app[CLIENT] = client
    app[STATE] = {}
    app.cleanup_ctx.append(lambda app: _lifetime(app, interval))
    app.router.add_post("/channels/{channel_id}/start", start)
    app.router.add_post("/channels/{channel_id}/stop", stop)
    app.router.add_get("/channels/{channel_id}", state)
    return app


@web.middleware
async def sdk_errors_as_http(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Answer what the Sigma API said, in this service's terms: the caller's mistake (4xx) or the API's (5xx)."""
    try:
        return await handler(request)
    except ValueError as exc:  # the SDK refuses a malformed id before sending anything
        return _error(400, "BadRequest", str(exc))
    except SigmaError as exc:
        status, headers = _status_for(exc)
        message = exc.message if isinstance(exc, APIStatusError) else str(exc)
        return _error(status, type(exc).__name__, message, headers)


def _status_for(exc: SigmaError) -> tuple[int, dict[str, str]]:
    if isinstance(exc, (NotFoundError, ConflictError)):
        return exc.status_code, {}
    if isinstance(exc, RateLimitError):
        return 503, {"Retry-After": str(int(exc.retry_after or 1))}
    if isinstance(exc, APITimeoutError):
        return 504, {}
    if isinstance(exc, APIConnectionError):
        return 503, {}
    # Anything else (401/403 included: this service's credentials, not the caller's) is a bad upstream answer.
    return 502, {}


def _error(status: int, error: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": error, "message": message}, status=status, headers=headers)


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
    await request.app[CLIENT].channels.start(channel_id)
    request.app[MONITOR].add_channel(channel_id)
    return web.json_response({"channel_id": channel_id, "started": True})


async def stop(request: web.Request) -> web.Response:
    channel_id = request.match_info["channel_id"]
    await request.app[CLIENT].channels.stop(channel_id)
    return web.json_response({"channel_id": channel_id, "stopped": True})


async def state(request: web.Request) -> web.Response:
    channel_id = request.match_info["channel_id"]
    last: Transition | None = request.app[STATE].get(channel_id)
    body: dict[str, Any] = {"channel_id": channel_id, "session_id": None, "state": None, "since": None}
    if last is not None:
        body.update(session_id=last.session_id, state=last.kind, since=last.at.isoformat())
    return web.json_response(body)


async def serve(client: SigmaClient, host: str, port: int, *, stop: asyncio.Event | None = None) -> None:
    """Serve until ``stop`` is set (or for ever); prints the URL once listening."""
    runner = web.AppRunner(build_app(client))
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        bound_host, bound_port = runner.addresses[0][:2]
        print(f"serving on http://{bound_host}:{bound_port}", flush=True)
        await (stop or asyncio.Event()).wait()
    finally:
        await runner.cleanup()


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Start channels over HTTP and serve their live state.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="default: %(default)s")
    args = parser.parse_args(argv)
    async with SigmaClient.from_env() as client:
        try:
            await serve(client, args.host, args.port)
        except OSError as exc:  # the port is taken: say so, not a traceback
            print(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}; try --port", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(asyncio.run(main(sys.argv[1:])))
