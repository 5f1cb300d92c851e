"""A monitoring service: watch every channel of a list and log each transition as one JSON line.

    SIGMA_USERNAME=... SIGMA_SECRET_KEY=... SIGMA_APP_ID=... \
        python examples/monitor_service.py [--out transitions.jsonl] CHANNEL_ID ...

Runs until interrupted (Ctrl-C or SIGTERM), then stops every watch cleanly. One event loop and one connection
pool serve every channel; a channel whose session ends is followed into its next session.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from typing import TextIO

import anyio
import msgspec

from sigma_async import SigmaClient, Transition

_encoder = msgspec.json.Encoder()


def to_json_line(t: Transition) -> bytes:
    """One transition as a JSON line: ``{"kind": "live", "session_id": ..., "at": ..., ...}``."""
    return _encoder.encode(t) + b"\n"


async def run(
    client: SigmaClient,
    channel_ids: list[str],
    out: TextIO,
    *,
    interval: float = 2.0,
    stop: asyncio.Event | None = None,
) -> int:
    """Log transitions of ``channel_ids`` to ``out`` until ``stop`` is set; returns how many were logged."""
    stop = stop or asyncio.Event()
    logged = 0

    def on_error(channel_id: str, error: Exception) -> None:
        # One bad channel id must not take the service down: report it and keep watching the rest.
        sys.stderr.write(_encoder.encode({"channel_id": channel_id, "error": str(error)}).decode() + "\n")

    async with (
        client.monitor(channel_ids=channel_ids, interval=interval, on_error=on_error) as monitor,
        anyio.create_task_group() as tg,
    ):

        async def stop_when_asked() -> None:
            await stop.wait()
            tg.cancel_scope.cancel()

        tg.start_soon(stop_when_asked)
        async for t in monitor:
            out.write(to_json_line(t).decode())
            out.flush()
            logged += 1
        tg.cancel_scope.cancel()  # every watched channel is gone: nothing left to wait for
    return logged


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Log every transition of some channels as JSON lines.")
    parser.add_argument("--out", help="append to this file instead of standard output")
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("channel_ids", nargs="+", metavar="CHANNEL_ID")
    args = parser.parse_args(argv)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # Opened once at start-up, before any watch runs: a blocking open here stalls nothing.
    sink = open(args.out, "a", encoding="utf-8") if args.out else contextlib.nullcontext(sys.stdout)  # noqa: ASYNC230, SIM115
    with sink as out:
        async with SigmaClient.from_env() as client:
            await run(client, args.channel_ids, out, interval=args.interval, stop=stop)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
