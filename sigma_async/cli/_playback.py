"""``sigma-async playback TARGET``: is a channel's HLS output advancing? A table of its renditions, or (with
``--watch``) one line per stall and resume until Ctrl-C."""

from __future__ import annotations

import argparse
import os
from datetime import datetime, timezone
from typing import Any

from .._client import SigmaClient
from ..playback import PlaybackDecision, PlaybackReport
from ..playback._namespace import check_target
from ._commands import UsageError, positive
from ._output import Output, fmt_time

__all__ = ["PlaybackClient", "add_parser", "decision_line", "run"]

DESCRIPTION = """\
Read a channel's HLS output (its liveStreamUrl: the master playlist and each rendition's media playlist) and say
whether it is advancing. TARGET is a channel id (read with the API, so credentials are needed) or the http(s)
URL of a master or media playlist (no credentials needed). Playlists are read without the API's credentials.

state: playing, stalled (a rendition has not changed for 3 target durations, by its Last-Modified or
PROGRAM-DATE-TIME), ended (EXT-X-ENDLIST everywhere), degraded (a rendition unreadable), unreachable.
"""

EPILOG = """\
exit status: 0 playing or ended, 1 stalled, degraded or unreachable (or an API error), 2 usage, 130 Ctrl-C.
With --watch, it runs until Ctrl-C. Common options (--json, --timeout, -v, credentials): see sigma-async -h.
"""

STYLES = {"playing": "green", "ended": "cyan", "stalled": "yellow", "failed": "red", "degraded": "yellow",
          "unreachable": "red", "playback_stalled": "yellow", "playback_resumed": "green"}  # fmt: skip


def add_parser(commands: Any, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Register ``playback`` (see ``cli._main.COMMAND_MODULES``)."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "playback", parents=[common], help="is a channel's HLS output advancing? (--watch: each stall and resume)",
        description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("target", metavar="TARGET", help="a channel id, or the URL of a master or media playlist")
    parser.add_argument("--watch", action="store_true", help="print one line per stall and resume until Ctrl-C")
    parser.add_argument("--interval", type=positive, default=2.0, metavar="S",
                        help="with --watch: read each playlist about once per max(S, target duration) (default: 2)")
    parser.add_argument("--stall-after", type=positive, metavar="S",
                        help="stalled after S seconds without an advance (default: 3 target durations)")
    parser.set_defaults(handler=run, subparser=parser, client_class=PlaybackClient)
    return parser


async def run(client: SigmaClient, args: argparse.Namespace, out: Output) -> int:
    """Probe once (exit 1 unless playing or ended), or watch until Ctrl-C."""
    target: str = args.target
    try:
        check_target(target)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not target.lower().startswith(("http://", "https://")) and not getattr(client, "has_credentials", True):
        raise UsageError(
            "a channel id is read with the API, which needs credentials (SIGMA_USERNAME, SIGMA_SECRET_KEY, "
            "SIGMA_APP_ID, or --env-file); or give the playlist's URL"
        )
    if getattr(args, "timeout", None):
        client.playback.timeout = args.timeout
    if args.watch:
        return await _watch(client, args, out)
    report = await client.playback.probe(target, stall_after=args.stall_after)
    show_report(report, out)
    return 0 if report.state in ("playing", "ended") else 1


def show_report(report: PlaybackReport, out: Output) -> None:
    if out.json:
        out.json_line(report)
        return
    headline = f"{report.state}" + (f" ({report.error})" if report.error else "")
    out.fields([("url", report.url), ("state", headline)])
    rows = [
        [
            r.name, r.resolution or "", "" if r.media_sequence is None else str(r.media_sequence),
            "" if r.age is None else f"{r.age:.0f} s", r.state + (f" ({r.error})" if r.error else ""),
        ]
        for r in report.renditions
    ]  # fmt: skip
    if rows:
        out.table(["rendition", "resolution", "sequence", "age", "state"], rows)


async def _watch(client: SigmaClient, args: argparse.Namespace, out: Output) -> int:
    if not out.json:
        out.note(f"watching the playback of {args.target} (Ctrl-C to stop)")
    async for decision in client.playback.watch(args.target, interval=args.interval, stall_after=args.stall_after):
        at = datetime.now(timezone.utc)
        if out.json:
            out.json_line({"kind": decision.transition_kind, "at": at, "renditions": list(decision.renditions),
                           "reason": decision.reason})  # fmt: skip
        else:
            out.text(decision_line(decision, at), style=STYLES.get(decision.transition_kind))
    return 0  # pragma: no cover - the watch runs until interrupted


def decision_line(decision: PlaybackDecision, at: datetime) -> str:
    """``2024-07-22 11:34:20Z  playback_stalled  720p, 480p  stale``."""
    names = ", ".join(decision.renditions)
    return f"{fmt_time(at)}  {decision.transition_kind:<16}  {names}  {decision.reason}"


class PlaybackClient(SigmaClient):
    """A ``SigmaClient`` that can be made without credentials: reading a playlist URL needs none."""

    has_credentials = True

    @classmethod
    def from_env(cls, env_file: str | os.PathLike[str] | None = None, **overrides: Any) -> SigmaClient:
        try:
            return super().from_env(env_file, **overrides)
        except ValueError as exc:
            if not str(exc).startswith("missing credentials"):
                raise
        # No API call is made with these: ``run`` refuses a channel id without real credentials.
        client = cls(username="anonymous", secret_key="-", app_id="-")
        client.has_credentials = False
        return client
