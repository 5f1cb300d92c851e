"""``sigma-async watch``: a session's (or channel's) transitions as they happen, and a word on stderr when the
server stops answering, since a watch retries for ever and would otherwise print nothing at all."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from .._client import SigmaClient
from .._protocol import Request, Response
from ..errors import APIConnectionError, APIStatusError, SigmaError
from ..transitions import Transition, Unknown
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
}


async def watch(client: SigmaClient, args: argparse.Namespace, out: Output) -> int:
    if isinstance(client, ReportingClient):
        client.notice = OutageNotice(out, max_silence=args.max_silence)
    if args.channel:
        stream = client.watch_channel(args.channel, interval=args.interval, max_silence=args.max_silence)
        if not out.json:
            out.note(f"watching channel {args.channel} across its sessions (Ctrl-C to stop)")
    else:
        stream = client.watch_session(
            args.session_id, interval=args.interval, since=args.since, max_silence=args.max_silence
        )
        if not out.json:
            out.note(f"watching session {args.session_id} until it ends (Ctrl-C to stop)")
    async for transition in stream:
        if out.json:
            out.json_line(transition)
        else:
            out.text(transition_line(transition), style=KIND_STYLES.get(transition.kind))
    return 0


def transition_line(t: Transition) -> str:
    """``2024-07-22 11:34:20Z  5017085c  stable        event   Kênh ổn định``."""
    detail = (t.event.message or t.event.action) if t.event is not None else ""
    if isinstance(t, Unknown):
        detail = f"raw={t.raw!r} {detail}".rstrip()
    return f"{fmt_time(t.at)}  {t.session_id[:8]}  {t.kind:<12}  {t.source:<6}  {detail}".rstrip()


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
