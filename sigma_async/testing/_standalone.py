"""Run the emulator as its own process: ``python -m sigma_async.testing`` or ``sigma-async emulator``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

from ._emulator import DEFAULT_APP_ID, DEFAULT_SECRET_KEY, DEFAULT_USERNAME, Emulator

__all__ = ["build_parser", "main", "serve"]


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The emulator's command-line options (shared with ``sigma-async emulator``)."""
    parser = argparse.ArgumentParser(
        prog=prog or "python -m sigma_async.testing",
        description="Serve a fake Sigma Livestream API on loopback until interrupted.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one (default: %(default)s)")
    parser.add_argument("--username", default=DEFAULT_USERNAME, help="accepted username (default: %(default)s)")
    parser.add_argument("--secret-key", default=DEFAULT_SECRET_KEY, help="accepted secret key (default: %(default)s)")
    parser.add_argument("--app-id", default=DEFAULT_APP_ID, help="accepted X-App-Id (default: %(default)s)")
    parser.add_argument(
        "--speed", type=float, default=1.0, help="emulated seconds per real second, for timers (default: %(default)s)"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed ids and random faults, for reproducible runs")
    parser.add_argument(
        "--auto-publish", type=float, default=None, metavar="SECONDS",
        help="a simulated encoder connects to each session this many emulated seconds after its channel starts, "
        "so the session goes live (default: never; drive sessions with the control routes instead)",
    )  # fmt: skip
    parser.add_argument(
        "--throttle", type=float, default=None, metavar="RATE",
        help="answer 429 past RATE requests per second, as a rate-limited API does (default: no limit)",
    )  # fmt: skip
    parser.add_argument(
        "--throttle-window", type=float, default=None, metavar="SECONDS",
        help="count --throttle over a sliding window of SECONDS: at most RATE * SECONDS requests in any such "
        "window (default: a token bucket with bursts of a tenth of a second's worth)",
    )  # fmt: skip
    parser.add_argument(
        "--no-app-wide-listings", dest="app_wide_listings", action="store_false",
        help="refuse event listings without q (400), as a server that does not serve them: poll='auto' then "
        "falls back to lean",
    )  # fmt: skip
    parser.add_argument(
        "--max-per-page", type=int, default=None, metavar="N",
        help="listing pages hold at most N items whatever perPage asked, and say so (default: no cap)",
    )  # fmt: skip
    parser.add_argument(
        "--latency", type=float, default=0.0, metavar="SECONDS",
        help="hold every API answer back this long, as a loaded server does (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--live-sessions", type=int, default=0, metavar="N",
        help="start with N live sessions (channels live-1 ... live-N, each started with an encoder connected); "
        "list them with GET /api/livestream/sessions without q (default: none)",
    )  # fmt: skip
    parser.epilog = CONTROL_HELP
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    return parser


CONTROL_HELP = """\
control routes (authenticated like the API; KEY is a channel id, meaning its open session, or a session id):
  POST /_emulator/sessions/KEY/publish     an encoder connects: the session goes live
  POST /_emulator/sessions/KEY/unpublish   the encoder goes away: the session ends after stopTimeout
  POST /_emulator/sessions/KEY/interrupt   the signal drops
  POST /_emulator/sessions/KEY/restore     the signal comes back
  POST /_emulator/live-sessions            {"count": N}: N more live sessions at once; answers their ids

each channel's HLS output is served at its liveStreamUrl (/manifest/CHANNEL/master.m3u8, no credentials);
playback controls (authenticated too), until resume:
  POST /_emulator/channels/CHANNEL/playback/stall[?rendition=720p]        hold one rendition (or all) still
  POST /_emulator/channels/CHANNEL/playback/fail?rendition=720p&status=404  answer that status (or master)
  POST /_emulator/channels/CHANNEL/playback/resume                          undo every stall and fail
"""


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """Parse ``argv``, serve until SIGINT or SIGTERM, and return the exit status."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    # Checked here so that a bad value is a usage error (exit 2, one line), never a traceback.
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be between 0 and 65535, got {args.port}")
    if not args.speed > 0:
        parser.error(f"--speed must be > 0, got {args.speed}")
    if args.auto_publish is not None and not 0 <= args.auto_publish < float("inf"):
        parser.error(f"--auto-publish must be a number of seconds >= 0, got {args.auto_publish}")
    if args.throttle is not None and not 0 < args.throttle < float("inf"):
        parser.error(f"--throttle must be a number of requests per second > 0, got {args.throttle}")
    if args.throttle_window is not None:
        if args.throttle is None:
            parser.error("--throttle-window needs --throttle")
        if not 0 < args.throttle_window < float("inf"):
            parser.error(f"--throttle-window must be a number of seconds > 0, got {args.throttle_window}")
    if args.max_per_page is not None and args.max_per_page < 1:
        parser.error(f"--max-per-page must be >= 1, got {args.max_per_page}")
    if not 0 <= args.latency < float("inf"):
        parser.error(f"--latency must be a number of seconds >= 0, got {args.latency}")
    if args.live_sessions < 0:
        parser.error(f"--live-sessions must be >= 0, got {args.live_sessions}")
    try:
        emulator = Emulator(
            host=args.host,
            port=args.port,
            username=args.username,
            secret_key=args.secret_key,
            app_id=args.app_id,
            speed=args.speed,
            seed=args.seed,
            auto_publish=args.auto_publish,
            throttle=args.throttle,
            throttle_window=args.throttle_window,
            app_wide_listings=args.app_wide_listings,
            max_per_page=args.max_per_page,
            latency=args.latency,
        )
    except ValueError as exc:  # e.g. credentials the client could not send
        parser.error(str(exc))
    try:
        asyncio.run(serve(emulator, live_sessions=args.live_sessions))
    except KeyboardInterrupt:  # where signal handlers are not available (Windows)
        pass
    except (OSError, OverflowError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        print(f"emulator: cannot listen on {args.host}:{args.port}: {reason}", file=sys.stderr)
        return 1
    return 0


async def serve(
    emulator: Emulator,
    *,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[Emulator], object] | None = None,
    out: TextIO | None = None,
    live_sessions: int = 0,
) -> None:
    """Run ``emulator`` until ``stop`` is set or the process gets SIGINT/SIGTERM.

    Once listening (and holding ``live_sessions`` live sessions, made once its URL is known, which their
    channels' ``liveStreamUrl`` carries) it calls ``on_ready``, or by default prints one line with its URL and
    credentials.
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    try:
        async with emulator:
            if live_sessions:
                emulator.add_live_sessions(live_sessions)
            if on_ready is not None:
                on_ready(emulator)
            else:
                print(ready_line(emulator), file=out or sys.stdout, flush=True)
                if emulator.auto_publisher is not None:
                    delay = emulator.auto_publisher.delay.total_seconds()
                    print(f"A simulated encoder connects to each session {delay:g} s after its channel starts.",
                          file=out or sys.stdout, flush=True)  # fmt: skip
                if live_sessions:
                    print(f"{live_sessions:,} live sessions on channels live-1 ... live-{live_sessions}.",
                          file=out or sys.stdout, flush=True)  # fmt: skip
                if emulator.state.latency:
                    print(f"Every API answer is held back {emulator.state.latency:g} s.",
                          file=out or sys.stdout, flush=True)  # fmt: skip
            await stop.wait()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def ready_line(emulator: Emulator) -> str:
    """``Sigma emulator listening on http://127.0.0.1:PORT username=... app_id=... secret_key=...``."""
    # The secret is printed on purpose: it is the emulator's own throwaway credential, and callers need it.
    return (
        f"Sigma emulator listening on {emulator.url} username={emulator.username} app_id={emulator.app_id} "
        f"secret_key={emulator.secret_key} (emulator-only credentials; Ctrl-C to stop)"
    )
