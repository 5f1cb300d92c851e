"""``sigma-async apply``: make the channels a TOML file describes exist, and run or not, as it says."""

from __future__ import annotations

import argparse
import contextlib
from collections import Counter
from collections.abc import Callable
from typing import Any

from .._client import SigmaClient
from ..apply import (
    ApplyReport,
    ItemResult,
    Plan,
    SpecFileError,
    StateError,
    apply,
    default_state_path,
    load_desired,
)
from ._commands import UsageError, count_arg
from ._output import Output

__all__ = ["add_parser", "run"]

DESCRIPTION = """\
Create, start, stop (and with --prune delete) channels so that the server matches FILE, a TOML file of
[[channel]] tables (name, running, and the fields of a channel: stop_timeout, tags, destination_catchup, ...)
with optional [defaults]. ${NAME} in a value is read from the environment: keep secrets there.

The plan is printed first:  + create   ~ start / stop   - delete (--prune)   ! replace (--replace)   ? in doubt
Applying the same file again changes nothing. The API has no "list channels", so apply keeps each name's channel
id in a state file (FILE's name with .state.json; no secret in it). A create that was sent and never answered
(a crash, a lost connection) leaves its name "in doubt": apply will not create it again until you have looked in
the console and said what you found, with --forget NAME (not there: create it) or --adopt NAME=CHANNEL_ID (there).
"""

EPILOG = """\
exit status: 0 the server matches the file, 1 an item failed or is in doubt (each is named), 2 a bad file or
usage (nothing sent). Common options (--json, --timeout, -v, credentials) go before or after the command.
"""

LABELS = {
    "create": "create", "start": "start", "stop": "stop", "delete": "delete", "replace": "replace",
    "in_doubt": "in doubt", "read": "unreadable",
}  # fmt: skip
DONE = {"create": "created", "start": "started", "stop": "stopped", "delete": "deleted", "replace": "replaced"}


def add_parser(commands: Any, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Register ``apply`` (see ``cli._main.COMMAND_MODULES``)."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "apply", parents=[common], help="make channels match a TOML file: plan, then create, start, stop",
        description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", metavar="FILE", help="the channels file (TOML)")
    parser.add_argument("--state", metavar="PATH", help="the state file (default: FILE with .state.json)")
    parser.add_argument("--prune", action="store_true",
                        help="delete channels in the state but no longer in FILE (a running one is stopped first)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and send nothing (reads only)")
    parser.add_argument("--replace", action="store_true",
                        help="delete and re-create channels whose spec changed (their stream key and URLs change)")
    parser.add_argument("--concurrency", type=count_arg, default=16, metavar="N",
                        help="requests in flight (default: 16)")
    parser.add_argument("--forget", action="append", default=[], metavar="NAME",
                        help="drop NAME from the state: a create in doubt the console shows never happened "
                        "(it is then created), or a channel no longer in FILE to stop managing (repeat)")
    parser.add_argument("--adopt", action="append", default=[], metavar="NAME=CHANNEL_ID",
                        help="record CHANNEL_ID as NAME's channel: a create in doubt the console shows did happen")
    parser.set_defaults(handler=run, subparser=parser)
    return parser


async def run(client: SigmaClient, args: argparse.Namespace, out: Output) -> int:
    """Apply FILE; 1 if any item failed or is in doubt, 2 for a bad file."""
    try:
        desired = load_desired(args.file)
    except SpecFileError as exc:
        for problem in exc.problems:
            out.error(problem.describe(exc.source))
        return 2
    adopt = dict(_pair(text) for text in args.adopt)
    state_path = args.state or str(default_state_path(args.file))
    printer = _Printer(out, args.file, state_path, dry_run=args.dry_run)
    with contextlib.ExitStack() as stack:
        progress: list[Callable[[int, int], None]] = []

        def on_plan(plan: Plan) -> None:
            printer.plan(plan)
            if not args.dry_run:
                progress.append(stack.enter_context(out.progress(len(plan.runnable), "applying")))

        try:
            report = await apply(
                client, desired, state=state_path, prune=args.prune, replace=args.replace, dry_run=args.dry_run,
                concurrency=args.concurrency, forget=args.forget, adopt=adopt, on_plan=on_plan,
                on_result=printer.result, on_progress=lambda done, total: progress[0](done, total),
            )  # fmt: skip
        except StateError as exc:
            out.error(str(exc))
            return 1
        except ValueError as exc:  # --forget or --adopt that cannot be done
            raise UsageError(str(exc)) from None
    printer.summary(report)
    return 0 if report.ok else 1


class _Printer:
    """The plan before anything is done, then each item: JSON lines as they settle, or a table at the end."""

    def __init__(self, out: Output, file: str, state: str, *, dry_run: bool) -> None:
        self.out = out
        self.file = file
        self.state = state
        self.dry_run = dry_run
        self.settled: list[ItemResult] = []
        self.order: dict[tuple[str, str], int] = {}
        self.held: set[tuple[str, str]] = set()

    def plan(self, plan: Plan) -> None:
        self.order = {(a.kind, a.name): i for i, a in enumerate(plan.actions)}
        self.held = {(a.kind, a.name) for a in plan.held}
        # With --json, stdout carries only the items; the plan goes to stderr, still before anything is done.
        show = self.out.note if self.out.json else self.out.text
        if not plan.actions:
            show(f"No changes: {len(plan.unchanged)} channels match {self.file}.")
        else:
            width = max(len(a.name) for a in plan.actions)
            show(f"Plan for {self.file} (state {self.state}):")
            for action in plan.actions:
                line = f"  {action.symbol} {LABELS[action.kind]:<10} {action.name:<{width}}"
                detail = action.reason or ("then start" if action.start_after else "")
                show((line + "  " + detail).rstrip())
            changes = len(plan.runnable)
            show(f"{changes} to change, {len(plan.unchanged)} unchanged" + (
                f", {len(plan.held)} held" if plan.held else ""))  # fmt: skip
        if plan.kept:
            show(f"Kept (in the state, not in the file; --prune deletes them): {', '.join(plan.kept)}")
        replaced = [a.name for a in plan.runnable if a.kind == "replace"]
        if replaced:
            self.out.warning(
                f"replacing {', '.join(replaced)}: each new channel has a new id, stream key and URLs; "
                "encoders and players need the new ones"
            )

    def result(self, item: ItemResult) -> None:
        if self.out.json:
            self.out.json_line(item.to_dict())
        self.settled.append(item)

    def summary(self, report: ApplyReport) -> None:
        if self.out.json:
            return
        if self.dry_run:
            stuck = sum(r.ok is False for r in report.results)
            note = f"; {stuck} held, as the plan says (exit status 1)" if stuck else ""
            self.out.text("dry run: nothing was sent" + note, style="bold red" if stuck else "bold green")
            return
        if not report.results:
            return  # "No changes" said it all
        done = sorted(self.settled, key=lambda r: self.order.get((r.action, r.name), len(self.order)))
        rows = [[self.verdict(r), LABELS[r.action], r.name, r.channel_id or "-", r.error or ""]
                for r in done if r.action != "in_doubt"]  # fmt: skip
        if rows:
            self.out.table(["", "action", "name", "channel id", "error"], rows)
        counts = Counter(DONE[r.action] for r in done if r.ok and r.action in DONE)
        summary = ", ".join(f"{n} {what}" for what, n in counts.items()) or "nothing changed"
        held = [r for r in done if (r.action, r.name) in self.held and r.action != "in_doubt"]
        failed = [r for r in done if not r.ok and r.name not in report.in_doubt and r not in held]
        if failed:
            summary += f"; {len(failed)} failed"
        if held:
            summary += f"; {len(held)} held"
        if report.in_doubt:
            summary += f"; in doubt: {', '.join(report.in_doubt)} (see above: --forget or --adopt once checked)"
        self.out.text(f"applied {self.file}: {summary}", style="bold red" if not report.ok else "bold green")

    def verdict(self, item: ItemResult) -> str:
        if item.ok:
            return "ok"
        return "held" if (item.action, item.name) in self.held else "FAILED"


def _pair(text: str) -> tuple[str, str]:
    name, sep, channel_id = text.partition("=")
    if not sep or not name or not channel_id:
        raise UsageError(f"--adopt takes NAME=CHANNEL_ID, not {text!r}")
    return name, channel_id
