"""What each ``sigma-async`` subcommand does, given an open client; ``_main`` parses and dispatches."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from .._client import SigmaClient
from ..errors import SigmaError
from ..models import Channel, ChannelCreate, S3Destination
from ._output import Output, channel_fields, failure_record, fmt_time, to_json
from ._specs import SpecError, SpecItem, parse_specs

__all__ = [
    "S3_SECRET_ENV",
    "UsageError",
    "action_record",
    "channels_create",
    "channels_create_many",
    "channels_delete",
    "channels_get",
    "channels_start",
    "channels_stop",
    "events_list",
    "positive",
    "sessions_list",
    "sessions_status",
]

#: Where ``channels create`` and ``create-many`` find the S3 secret key, so it need not be on a command line.
S3_SECRET_ENV = "SIGMA_S3_SECRET_KEY"


class UsageError(Exception):
    """The command cannot run as given (missing option, unreadable file): exit status 2, nothing sent."""


def count_arg(text: str) -> int:
    """argparse ``type=`` for a count: a whole number, at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


# -- channels -------------------------------------------------------------------------------------------------


async def channels_get(client: SigmaClient, args: argparse.Namespace, out: Output) -> int:
    channel = await client.channels.get(args.channel_id)
    _show_channel(out, channel)
    return 0


async def channels_create(client: SigmaClient, args: argparse.Namespace, out: Output) -> int:
    spec = ChannelCreate(
        name=args.name,
        description=args.description,
        tags=list(args.tag or []),
        stop_timeout=args.stop_timeout,
        destination_catchup=_s3_from(args),
    )
    channel = await client.channels.create(spec)
    if not out.json:
        out.text(f"Created channel {channel.id}", style="bold green")
    _show_channel(out, channel)
    return 0


async def channels_start(client: SigmaClient, args: argparse.Namespace, out: Output) -> int:
    await client.channels.start(args.channel_id)
    # The start answer does not name the session; the channel does, and the user wants it to watch.
    try:
        channel = await client.channels.get(args.channel_id)
    except SigmaError as exc:
        out.note(f"started, but could not read the channel back to name its session: {exc}")
        channel = Channel(id=args.channel_id)
    if out.json:
        out.json_line(action_record(args.channel_id, "start", session_id=channel.current_session_id))
        return 0
    out.text(f"Started channel {channel.id}", style="bold green")
    if channel.current_session_id:
        out.fields([("session", channel.current_session_id), ("publish url", channel.input.publish_url or "")])
        out.note(f"follow it with: sigma-async watch {channel.current_session_id}")
    return 0


async def channels_stop(client: SigmaClient, args: argparse.Namespace, out: Output) -> int:
    await client.channels.stop(args.channel_id)
    _done(out, args.channel_id, "stop", "Stopped")
    return 0


async def channels_delete(client: SigmaClient, args: argparse.Namespace, out: Output) -> int:
    await client.channels.delete(args.channel_id)
    _done(out, args.channel_id, "delete", "Deleted")
    return 0


async def channels_create_many(client: SigmaClient, args: argparse.Namespace, out: Output) -> int:
    data = _read_input(args.file)
    try:
        items = parse_specs(data, s3_secret=os.environ.get(S3_SECRET_ENV))
    except SpecError as exc:
        raise UsageError(f"{args.file}: {exc}") from None
    if args.dry_run:
        return _dry_run(out, items)
    # Opened before anything is sent: an unwritable path must not surface after the channels exist.
    failures_out = _open_for_failures(args.failures_out)
    valid = [(i, item.spec) for i, item in enumerate(items) if item.spec is not None]
    outcome: dict[int, Channel | BaseException] = {
        i: item.error for i, item in enumerate(items) if item.error is not None
    }

    def settle(position: int, result: object) -> None:
        # Called as each create completes: what is here when a Ctrl-C lands is exactly what was confirmed.
        assert isinstance(result, (Channel, SigmaError))
        outcome[valid[position][0]] = result

    try:
        with out.progress(len(valid), "creating channels") as progress:
            await client.channels.create_many(
                [spec for _, spec in valid],
                concurrency=args.concurrency,
                rate_limit=args.rate_limit,
                on_progress=progress,
                on_result=settle,
            )
    except asyncio.CancelledError:
        failures = _report_created(out, items, outcome, in_flight=min(args.concurrency, len(valid)))
        _write_failures(failures_out or out.stderr, failures)
        raise
    else:
        failures = _report_created(out, items, outcome)
        _write_failures(failures_out or out.stderr, failures)
    finally:
        if failures_out is not None:
            failures_out.close()
    if not out.json:
        summary = f"created {len(items) - len(failures)} of {len(items)} channels"
        if failures:
            summary += f"; {len(failures)} failed (details as JSON lines on {args.failures_out or 'stderr'})"
        out.text(summary, style="bold red" if failures else "bold green")
    return 1 if failures else 0


# -- sessions and events --------------------------------------------------------------------------------------


async def sessions_list(client: SigmaClient, args: argparse.Namespace, out: Output) -> int:
    rows: list[list[str]] = []
    async for session in client.sessions.iter(args.channel_id, per_page=_page_size(args.limit)):
        if out.json:
            out.json_line(session)
        # "-" where there is nothing to show: a session that never went on air has no start (startedAt null).
        duration = f"{session.duration:g} s" if session.duration is not None else "-"
        rows.append([
            session.id, session.status or "-", fmt_time(session.started_at) or "-",
            fmt_time(session.finished_at) or "-", duration,
        ])  # fmt: skip
        if len(rows) == args.limit:  # checked after, not before, the item: no page is read for nothing
            break
    if not out.json:
        _table_or_none(out, ["session", "status", "started", "finished", "duration"], rows, "sessions")
    return 0


async def sessions_status(client: SigmaClient, args: argparse.Namespace, out: Output) -> int:
    status = await client.sessions.status(args.session_id)
    if out.json:
        out.json_line(status)
    else:
        out.text(status.status, style="bold")
    return 0


async def events_list(client: SigmaClient, args: argparse.Namespace, out: Output) -> int:
    rows: list[list[str]] = []
    async for event in client.events.iter(args.session_id, per_page=_page_size(args.limit)):
        if out.json:
            out.json_line(event)
        rows.append([fmt_time(event.created_at), event.action, event.actor or "", event.message or "", event.id])
        if len(rows) == args.limit:
            break
    if not out.json:
        _table_or_none(out, ["time", "action", "actor", "message", "event"], rows, "events")
    return 0


# -- helpers --------------------------------------------------------------------------------------------------


def _show_channel(out: Output, channel: Channel) -> None:
    if out.json:
        out.json_line(channel)
    else:
        out.fields(channel_fields(channel))


def action_record(channel_id: str, action: str, **extra: Any) -> dict[str, Any]:
    """What ``--json`` prints for start, stop and delete, one shape for all three:
    ``{"channel_id": ..., "action": "start", "ok": true, "session_id": ...}`` (``session_id`` for start only)."""
    return {"channel_id": channel_id, "action": action, "ok": True, **extra}


def _done(out: Output, channel_id: str, action: str, done: str) -> None:
    if out.json:
        out.json_line(action_record(channel_id, action))
    else:
        out.text(f"{done} channel {channel_id}", style="bold green")


def _s3_from(args: argparse.Namespace) -> S3Destination | None:
    secret = args.s3_secret_key or os.environ.get(S3_SECRET_ENV)
    given = {
        "--s3-access-key": args.s3_access_key,
        "--s3-bucket": args.s3_bucket,
        "--s3-endpoint": args.s3_endpoint,
        "--s3-region": args.s3_region,
    }
    if not any(given.values()) and not args.s3_secret_key and not args.s3_segment_prefix:
        return None
    missing = [flag for flag, value in given.items() if not value]
    if not secret:
        missing.append(f"--s3-secret-key (or {S3_SECRET_ENV})")
    if missing or not secret:
        raise UsageError("a catchup destination needs " + ", ".join(missing))
    return S3Destination(
        access_key=args.s3_access_key,
        bucket=args.s3_bucket,
        endpoint=args.s3_endpoint,
        secret_key=secret,
        region=args.s3_region,
        segment_prefix=args.s3_segment_prefix,
    )


def _read_input(name: str) -> bytes:
    if name == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(name).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {name}: {exc.strerror or exc}") from None


def _dry_run(out: Output, items: list[SpecItem]) -> int:
    bad = 0
    rows = []
    for index, item in enumerate(items):
        if item.error is not None:
            bad += 1
        verdict = "ok" if item.error is None else f"invalid: {item.error}"
        if out.json:
            out.json_line({"index": index, "name": item.name, "ok": item.error is None, "message": verdict})
        rows.append([str(index), item.name, verdict])
    if not out.json:
        out.table(["#", "name", "check"], rows, title="dry run: nothing was sent")
        out.text(f"{len(items) - bad} of {len(items)} specs are valid", style="bold red" if bad else "bold green")
    return 1 if bad else 0


def _report_created(
    out: Output, items: list[SpecItem], outcome: dict[int, Channel | BaseException], *, in_flight: int | None = None
) -> list[dict[str, Any]]:
    """Print one row (or JSON line) per settled item, in input order; return the failure records.

    ``in_flight`` is given after an interrupt: how many creates may have been cut off unanswered.
    """
    failures: list[dict[str, Any]] = []
    rows: list[list[str]] = []
    for index in sorted(outcome):
        result = outcome[index]
        name = items[index].name
        if isinstance(result, Channel):
            if out.json:
                out.json_line({"index": index, "ok": True, "channel": result})
            rows.append([str(index), name, result.id])
        else:
            record = failure_record(index, name, result)
            failures.append(record)
            if out.json:
                out.json_line({**record, "ok": False})
            rows.append([str(index), name, f"{record['error']}: {record['message']}"])
    if not out.json:
        out.table(["#", "name", "channel id / error"], rows)
    if in_flight is not None:
        created = sum(1 for r in outcome.values() if isinstance(r, Channel))
        # Honest about the edge: a create cut off in flight may have been carried out by the server.
        out.note(
            f"interrupted: {created} channels confirmed created (listed above); up to {in_flight} more creates "
            "were in flight and may have been carried out"
        )
    return failures


def _open_for_failures(path: str | None) -> TextIO | None:
    if path is None:
        return None
    try:
        # Created even when nothing fails, so that a script can rely on the file after every run.
        return open(path, "w", encoding="utf-8")  # closed by the caller, after the run
    except OSError as exc:
        raise UsageError(f"cannot write failures to {path}: {exc.strerror or exc}") from None


def _write_failures(stream: TextIO, failures: list[dict[str, Any]]) -> None:
    if failures:
        stream.write("".join(to_json(record) + "\n" for record in failures))
        stream.flush()


def _page_size(limit: int | None) -> int:
    return 100 if limit is None else max(1, min(limit, 100))


def _table_or_none(out: Output, columns: list[str], rows: list[list[str]], what: str) -> None:
    if rows:
        out.table(columns, rows)
    else:
        out.note(f"no {what}")


def positive(text: str) -> float:
    """An argparse type: a finite number > 0 (seconds, a rate)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value
