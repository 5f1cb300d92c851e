"""``sigma-async watch``: a session's (or channel's) transitions as they happen, and a word on stderr when the
server stops answering, since a watch retries for ever and would otherwise print nothing at all. SIGTERM stops it
with a line and status 0."""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading
from collections.abc import Sequence

import anyio
from anyio.abc import TaskStatus

from .._client import SigmaClient
from .._protocol import Request, Response
from ..errors import APIConnectionError, APIStatusError, SigmaError
from ..transitions import PlaybackResumed, PlaybackStalled, Transition, Unknown
from ._output import Output, describe_error, fmt_time

__all__ = ["KIND_STYLES", "OutageNotice", "ReportingClient", "transition_line", "watch"]

#: Colours of transition kinds on a terminal.
KIND_STYLES = {
    "live": "green",
    "stable": "green",
    "restored": "green",
    "interrupted": "yellow",
    "stopped": "cyan",
    "ended": "bold cyan",
    "unknown": "magenta",
    "playback_stalled": "bold red",
    "playback_resumed": "green",
}


async def watch(client: SigmaClient, args: argparse.Namespace, out: Output) -> int:
    if isinstance(client, ReportingClient):
        client.notice = OutageNotice(out, max_silence=args.max_silence)
    playback = {"playback": True, "playback_stall_after": args.playback_stall_after} if args.playback else {}
    if args.channel:
        stream = client.watch_channel(args.channel, interval=args.interval, max_silence=args.max_silence, **playback)
        hello = f"watching channel {args.channel} across its sessions (Ctrl-C to stop)"
    else:
        session_id, _, channel_id = args.session_id.partition("@")
        stream = client.watch_session(
            session_id, interval=args.interval, since=args.since, max_silence=args.max_silence,
            channel_id=channel_id or None, **playback,
        )  # fmt: skip
        hello = f"watching session {session_id} until it ends (Ctrl-C to stop)"
    async with anyio.create_task_group() as tg:
        # SIGTERM (a process manager, `kill`) ends the watch as a request to stop, not as a failure: exit 0.
        terminated = await tg.start(_cancel_on_sigterm, tg.cancel_scope)
        if not out.json:
            out.note(hello)
        async with contextlib.aclosing(stream) as transitions:
            async for transition in transitions:
                if out.json:
                    out.json_line(transition)
                else:
                    out.text(transition_line(transition), style=KIND_STYLES.get(transition.kind))
        tg.cancel_scope.cancel()
    if terminated.is_set():
        out.note("sigma-async watch: stopped (SIGTERM)")
    return 0


async def _cancel_on_sigterm(
    scope: anyio.CancelScope, *, task_status: TaskStatus[anyio.Event] = anyio.TASK_STATUS_IGNORED
) -> None:
    terminated = anyio.Event()
    if threading.current_thread() is not threading.main_thread():
        task_status.started(terminated)  # signals reach the main thread only (main() run from a thread, in tests)
        return
    with anyio.open_signal_receiver(signal.SIGTERM) as signals:
        task_status.started(terminated)
        async for _ in signals:
            terminated.set()
            scope.cancel()
            return


def transition_line(t: Transition) -> str:
    """``2024-07-22 11:34:20Z  5017085c  stable            event     Kênh ổn định``."""
    detail = (t.event.message or t.event.action) if t.event is not None else ""
    if isinstance(t, (PlaybackStalled, PlaybackResumed)):
        detail = f"{', '.join(t.renditions)}: {t.reason}"
    if isinstance(t, Unknown):
        detail = f"raw={t.raw!r} {detail}".rstrip()
    return f"{fmt_time(t.at)}  {t.session_id[:8]}  {t.kind:<16}  {t.source:<8}  {detail}".rstrip()


class OutageNotice:
    """Says once on stderr that the server stopped answering, and once that it answers again."""

    def __init__(self, out: Output, *, max_silence: float | None) -> None:
        self.out = out
        self.max_silence = max_silence
        self.down = False

    def failed(self, exc: SigmaError, secrets: Sequence[str]) -> None:
        if self.down or not _transient(exc):
            return  # one warning per outage (not one per poll); a fatal error ends the watch and says so itself
        self.down = True
        then = f"giving up after {self.max_silence:g} s" if self.max_silence else "for ever; --max-silence to give up"
        self.out.warning(f"cannot poll the server ({describe_error(exc, secrets)}); still trying ({then})")

    def answered(self) -> None:
        if self.down:
            self.down = False
            self.out.note("the server answers again")


def _transient(exc: SigmaError) -> bool:
    """What a watch rides out by polling again (see ``sigma_async.watch``): no answer, 408, 429 or 5xx."""
    if isinstance(exc, APIStatusError):
        return exc.status_code >= 500 or exc.status_code in (408, 429)
    return isinstance(exc, APIConnectionError)


class ReportingClient(SigmaClient):
    """A ``SigmaClient`` that tells its ``notice`` how each call ended, after the client's own retries.

    ``send`` is the one path every call of the client takes, so this sees each poll of a watch whatever the
    polling strategy, without the watch layer knowing about the command line.
    """

    notice: OutageNotice | None = None

    async def send(self, request: Request) -> Response:
        try:
            response = await super().send(request)
        except SigmaError as exc:
            if self.notice is not None:
                self.notice.failed(exc, self.credentials.secrets())
            raise
        if self.notice is not None:
            self.notice.answered()
        return response
