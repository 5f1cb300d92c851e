"""A webhook receiver for ``sigma-async relay``: checks every signature and handles each transition once.

    export SIGMA_WEBHOOK_SECRET=whsec-...                     # the same secret the relay signs with
    python examples/webhook_receiver.py --port 8090 --db transitions.sqlite3
    sigma-async relay --sink http://127.0.0.1:8090/sigma --session ...

Its answers, and what the relay does with each:
- 204: handled, or a repeat of a delivery already handled (the relay sends a record again, with the same
  ``Sigma-Delivery-Id``, after a restart that came before its cursor was saved): the relay goes on.
- 401: the signature does not check out (a wrong secret, or clocks more than 5 minutes apart). The relay keeps
  the record and retries it: fix the secret and nothing is lost.
- 400: the body is not a transition. The relay puts the record in its dead-letter and goes on.

Each transition is stored in SQLite together with its delivery id, in one transaction: a record is handled
exactly once however often it arrives, and one that failed halfway is handled again on the relay's retry.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sqlite3
import sys

import msgspec
from aiohttp import web

from sigma_async import Transition, decode_transition
from sigma_async.relay import verify_signature

#: The port it listens on unless told otherwise: beside the README's emulator (8080) and channel service (8000).
DEFAULT_PORT = 8090

SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (id TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS transitions (
    id TEXT PRIMARY KEY, session_id TEXT NOT NULL, kind TEXT NOT NULL, at TEXT NOT NULL, body TEXT NOT NULL
);
"""


class Store:
    """What the receiver has handled: delivery ids and the transitions themselves, in one SQLite file.

    The calls are synchronous: each is a local write of a few hundred bytes, short enough for the event loop.
    """

    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path)
        self.db.executescript(SCHEMA)

    def handle_once(self, delivery_id: str, transition: Transition, body: bytes) -> bool:
        """Store ``transition`` unless this delivery was handled before; True if it is new."""
        with self.db:  # one transaction: the transition and its delivery id are stored together, or neither
            fresh = self.db.execute("INSERT OR IGNORE INTO deliveries (id) VALUES (?)", (delivery_id,)).rowcount
            if not fresh:
                return False
            self.db.execute(
                "INSERT INTO transitions (id, session_id, kind, at, body) VALUES (?, ?, ?, ?, ?)",
                (transition.id, transition.session_id, transition.kind, transition.at.isoformat(), body.decode()),
            )
        return True

    def kinds(self, session_id: str) -> list[str]:
        """The kinds stored for one session, in the order they arrived."""
        rows = self.db.execute("SELECT kind FROM transitions WHERE session_id = ? ORDER BY rowid", (session_id,))
        return [kind for (kind,) in rows]

    def close(self) -> None:
        self.db.close()


def build_app(store: Store, secret: str) -> web.Application:
    """The receiver: ``POST /sigma`` takes the relay's records."""

    async def sigma_hook(request: web.Request) -> web.Response:
        body = await request.read()  # the raw bytes, before any JSON parsing: the signature covers them
        if not verify_signature(body, request.headers.get("Sigma-Signature"), secret):  # tolerance=300 s
            return web.Response(status=401, text="bad signature")
        try:
            transition = decode_transition(body)  # Live(), Interrupted(), Ended(), ...
        except (msgspec.DecodeError, msgspec.ValidationError):
            return web.Response(status=400, text="not a transition")
        delivery_id = request.headers.get("Sigma-Delivery-Id") or transition.id
        if store.handle_once(delivery_id, transition, body):
            print(f"{transition.at:%H:%M:%S}  {transition.session_id}  {transition.kind}", flush=True)
        return web.Response(status=204)

    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_post("/sigma", sigma_hook)
    return app


async def serve(store: Store, secret: str, host: str, port: int, *, stop: asyncio.Event) -> None:
    """Serve until ``stop`` is set; prints the URL to give the relay as ``--sink``."""
    runner = web.AppRunner(build_app(store, secret))
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1]
        print(f"receiving on http://{host}:{bound}/sigma", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Receive the relay's signed webhooks; store each transition once.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--db", default="transitions.sqlite3", help="the SQLite file (created if missing)")
    args = parser.parse_args(argv)
    secret = os.environ.get("SIGMA_WEBHOOK_SECRET")
    if not secret:
        print("error: set SIGMA_WEBHOOK_SECRET to the secret the relay signs with", file=sys.stderr)
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    store = Store(args.db)
    with contextlib.closing(store):
        await serve(store, secret, args.host, args.port, stop=stop)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
