"""The emulator plus benchmark-only control routes, as its own process: ``python -m benchmarks._emulator_server``.

The watch benchmark changes session states from another process, so the emulator's state has to be reachable
over HTTP: ``POST /_control/setup`` makes N live sessions, ``POST /_control/flip`` interrupts or restores some
and answers the server's wall-clock time of the change, ``GET /_control/stats`` reports requests served and the
server's own CPU time. The API routes are the emulator's own (``sigma_async.testing._app.build_app``);
``--latency S`` holds every API answer (not the control routes) back S seconds, as a loaded server does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import Sequence

import msgspec
from aiohttp import web

from sigma_async._config import Credentials
from sigma_async.models import EventAction, Status
from sigma_async.testing import DEFAULT_APP_ID, DEFAULT_SECRET_KEY, DEFAULT_USERNAME, Clock, EmulatorState
from sigma_async.testing._app import build_app
from sigma_async.testing._control import add_live_sessions
from sigma_async.testing._faults import Fault, FaultPlan, Journal, JournalEntry

from ._loops import best_loop, run_on

__all__ = ["FlipRequest", "SetupRequest", "main"]


class SetupRequest(msgspec.Struct):
    sessions: int


class FlipRequest(msgspec.Struct):
    session_ids: list[str]


class _KindJournal(Journal):
    """The emulator's journal, also counting requests by what they read: ``status``, ``events`` (one session's),
    ``app events`` and ``app sessions`` (listings without ``q``), ``sessions`` (a channel's), ``other``."""

    def __init__(self, limit: int) -> None:
        super().__init__(limit=limit)
        self.kinds: Counter[str] = Counter()

    def begin(self, entry: JournalEntry) -> JournalEntry:
        route = entry.route or ""
        if route == "GET /sessions/{id}/status":
            kind = "status"
        elif route in ("GET /events", "GET /sessions"):
            kind = ("" if "q" in entry.query else "app ") + route.removeprefix("GET /")
        else:
            kind = "control" if route.startswith(("POST /_control", "GET /_control")) else "other"
        self.kinds[kind] += 1
        return super().begin(entry)


class _Control:
    def __init__(self, state: EmulatorState, journal: _KindJournal) -> None:
        self.state = state
        self.journal = journal

    async def setup(self, request: web.Request) -> web.Response:
        """Make ``sessions`` channels, start each and connect a publisher: N live sessions."""
        spec = msgspec.json.decode(await request.read(), type=SetupRequest)
        # A long stopTimeout: no session may end by itself while it is watched.
        sessions = add_live_sessions(self.state, spec.sessions, name="bench", stop_timeout=86_400)
        return _json({"session_ids": [s.id for s in sessions]})

    async def flip(self, request: web.Request) -> web.Response:
        """Interrupt each live session named and restore each interrupted one; answer when it happened."""
        spec = msgspec.json.decode(await request.read(), type=FlipRequest)
        for sid in spec.session_ids:
            session = self.state.session(sid)
            # Event and status set directly rather than through interrupt_signal(): that would arm a stopTimeout
            # deadline, and a session ending by itself mid-measurement would change what is measured.
            if session.status == Status.INTERRUPTED:
                self.state.add_event(sid, EventAction.SIGNAL_RESTORED, actor="system")
                self.state.set_status(sid, Status.LIVE)
            else:
                self.state.add_event(sid, EventAction.SIGNAL_INTERRUPTED, actor="system")
                self.state.set_status(sid, Status.INTERRUPTED)
        # Taken after the change: no request is served while this handler runs, so this is when it became visible.
        return _json({"at": time.time()})

    async def stats(self, request: web.Request) -> web.Response:
        return _json({
            "requests": self.journal.count(), "cpu": time.process_time(), "wall": time.time(),
            "kinds": self.journal.kinds,
        })  # fmt: skip


def _json(payload: object) -> web.Response:
    return web.Response(body=msgspec.json.encode(payload), content_type="application/json")


async def serve(host: str, port: int, seed: int, latency: float = 0.0) -> None:
    """Serve until SIGTERM/SIGINT, after printing ``emulator listening on http://HOST:PORT``."""
    credentials = Credentials(username=DEFAULT_USERNAME, secret_key=DEFAULT_SECRET_KEY, app_id=DEFAULT_APP_ID)
    state = EmulatorState(Clock(), app_id=DEFAULT_APP_ID, rng=random.Random(seed))
    # A short journal: thousands of requests a second would otherwise keep 10,000 full entries alive.
    journal = _KindJournal(limit=256)
    faults = FaultPlan(random.Random(seed))
    if latency:
        # Every answer of the API, not of the benchmark's own control routes.
        faults.add("*", Fault(latency=latency), times="always", when=lambda r: not r.path.startswith("/_control/"))
    app = build_app(state, faults, journal, credentials)
    control = _Control(state, journal)
    app.router.add_post("/_control/setup", control.setup)
    app.router.add_post("/_control/flip", control.flip)
    app.router.add_get("/_control/stats", control.stats)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.25)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    bound_host, bound_port = runner.addresses[0][:2]
    state.public_url = f"http://{bound_host}:{bound_port}"
    print(f"emulator listening on {state.public_url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._emulator_server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds every API answer is held back")
    args = parser.parse_args(argv)
    # The server on the fastest loop installed: it is not what is measured, and should keep up.
    run_on(best_loop(), serve(args.host, args.port, args.seed, args.latency))
    return 0


if __name__ == "__main__":
    sys.exit(main())
