"""How the command line shows results: JSON lines for scripts, tables for people (rich on a terminal)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from typing import Any, TextIO

import msgspec

from .._protocol import redact_text
from ..errors import APIStatusError
from ..models import Channel

try:  # rich is the optional ``cli`` extra: without it, or off a terminal, output is plain text
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table
    from rich.text import Text

    HAVE_RICH = True
except ImportError:  # pragma: no cover - exercised only where rich is not installed
    HAVE_RICH = False

__all__ = ["HAVE_RICH", "Output", "channel_fields", "describe_error", "failure_record", "fmt_time", "to_json"]

#: Keys whose values never reach the output, at any depth (the S3 secret key a channel echoes back).
SECRET_KEYS = frozenset({"secretKey", "secret_key"})
REDACTED = "***"
ProgressFn = Callable[[int, int], None]


def to_json(obj: Any) -> str:
    """One line of JSON: models with the wire's own keys, datetimes in ISO 8601, S3 secret keys hidden."""
    return msgspec.json.encode(_redact(msgspec.to_builtins(obj))).decode()


def _redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: (REDACTED if k in SECRET_KEYS and v is not None else _redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v) for v in value]
    return value


def fmt_time(at: datetime | None) -> str:
    """``2024-07-22 11:33:50Z``: UTC, to the second; empty for None."""
    if at is None:
        return ""
    if at.tzinfo is not None:
        at = at.astimezone(timezone.utc)
    return at.strftime("%Y-%m-%d %H:%M:%SZ")


class Output:
    """The command's stdout and stderr, in JSON mode or human mode.

    Human mode uses rich tables and colour when rich is installed and the stream is a terminal, aligned plain
    text otherwise. Every line is flushed as written, so a pipe reading ``watch`` sees each transition at once.
    """

    def __init__(
        self,
        *,
        json_mode: bool = False,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
        fancy: bool | None = None,
    ) -> None:
        self.json = json_mode
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        out_tty = fancy if fancy is not None else _isatty(self.stdout)
        err_tty = fancy if fancy is not None else _isatty(self.stderr)
        self._err_tty = err_tty
        self._console = Console(file=self.stdout, highlight=False) if HAVE_RICH and out_tty else None
        self._err_console = Console(file=self.stderr, highlight=False) if HAVE_RICH and err_tty else None

    @property
    def fancy(self) -> bool:
        """Whether stdout gets rich tables and colour."""
        return self._console is not None

    # -- stdout -----------------------------------------------------------------------------------------------

    def json_line(self, obj: Any) -> None:
        self._write(self.stdout, to_json(obj))

    def text(self, line: str = "", style: str | None = None) -> None:
        """A line of human output; ``style`` (rich markup style, e.g. ``"bold green"``) applies on a terminal."""
        if self._console is not None:
            # Text, not markup: a "[" or a trailing backslash in the data must print as it is.
            self._console.print(Text(line, style=style or ""), soft_wrap=True)
            self.stdout.flush()
        else:
            self._write(self.stdout, line)

    def table(self, columns: Sequence[str], rows: Sequence[Sequence[str]], *, title: str | None = None) -> None:
        """Rows under a header: a rich table on a terminal, columns aligned with spaces otherwise."""
        if self._console is not None:
            table = Table(title=title, title_justify="left", header_style="bold")
            for column in columns:
                table.add_column(column, overflow="fold")
            for row in rows:
                table.add_row(*(Text(cell) for cell in row))
            self._console.print(table)
            self.stdout.flush()
            return
        if title:
            self._write(self.stdout, title)
        widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]
        for row in (columns, *rows):
            self._write(self.stdout, "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())

    def fields(self, pairs: Sequence[tuple[str, str]], *, title: str | None = None) -> None:
        """One ``name: value`` per line, names aligned; empty values left out. Values are never folded, so
        a long URL stays one piece to copy."""
        shown = [(k, v) for k, v in pairs if v]
        if title:
            self.text(title, style="bold")
        width = max((len(k) for k, _ in shown), default=0)
        for key, value in shown:
            label = f"{key + ':':<{width + 1}} "
            if self._console is not None:
                self._console.print(Text.assemble((label, "bold"), value), soft_wrap=True)
                self.stdout.flush()
            else:
                self._write(self.stdout, label + value)

    # -- stderr -----------------------------------------------------------------------------------------------

    def note(self, line: str) -> None:
        """Side information for a person (progress, hints): stderr, so stdout stays clean for pipes."""
        if self._err_console is not None:
            self._err_console.print(Text(line, style="dim"), soft_wrap=True)
        else:
            self._write(self.stderr, line)

    def warning(self, message: str) -> None:
        """``warning: ...`` on one line of stderr, yellow on a terminal: something is wrong, and the command
        carries on."""
        line = "warning: " + " ".join(message.split())
        if self._err_console is not None:
            self._err_console.print(Text(line, style="yellow"), soft_wrap=True)
        else:
            self._write(self.stderr, line)

    def error(self, message: str) -> None:
        """``error: ...`` on one line of stderr, red on a terminal."""
        line = "error: " + " ".join(message.split())  # one line, whatever the message held
        if self._err_console is not None:
            self._err_console.print(Text(line, style="bold red"), soft_wrap=True)
        else:
            self._write(self.stderr, line)

    @contextlib.contextmanager
    def progress(self, total: int, label: str) -> Iterator[ProgressFn]:
        """A progress callback ``(done, total)`` for a terminal: a rich bar, or one self-rewriting line without
        rich. Off a terminal, and in JSON mode, it shows nothing: stderr then carries only what a script reads."""
        if self.json or total == 0 or not self._err_tty:
            yield _ignore
        elif self._err_console is not None:
            columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
            with Progress(*columns, console=self._err_console) as bar:
                task = bar.add_task(label, total=total)
                yield lambda done, _total: bar.update(task, completed=done)
        else:
            def show(done: int, all_: int) -> None:
                self.stderr.write(f"\r{label}: {done}/{all_}" + ("\n" if done == all_ else ""))
                self.stderr.flush()

            yield show

    def _write(self, stream: TextIO, line: str) -> None:
        stream.write(line + "\n")
        stream.flush()


def channel_fields(channel: Channel) -> list[tuple[str, str]]:
    """What ``channels get`` shows: everything a user needs to publish and to watch, no S3 secret.

    The stream key is shown: it is what an encoder needs, and the user asked for this channel.
    """
    s3 = channel.destination_catchup.s3 if channel.destination_catchup else None
    catchup = f"s3 {s3.endpoint.rstrip('/')}/{s3.bucket} ({s3.region})" if s3 is not None else ""
    return [
        ("id", channel.id),
        ("name", channel.name),
        ("description", channel.description or ""),
        ("tags", ", ".join(channel.tags)),
        ("status", channel.status or ""),
        ("mode", " / ".join(x for x in (channel.type, channel.mode, channel.output_format) if x)),
        ("stop timeout", f"{channel.stop_timeout} s" if channel.stop_timeout is not None else ""),
        ("catchup", catchup if channel.catchup else ("off" if channel.catchup is False else "")),
        ("current session", channel.current_session_id or "none"),
        ("rtmp server", channel.input.rtmp_server or ""),
        ("stream key", channel.input.stream_token or ""),
        ("publish url", channel.input.publish_url or ""),
        ("live url", channel.live_stream_url or ""),
        ("created", fmt_time(channel.created_at)),
        ("updated", fmt_time(channel.updated_at)),
    ]


def describe_error(exc: BaseException, secrets: Sequence[str] = (), *, with_type: bool = True) -> str:
    """One line for stderr: ``HTTP 401: Invalid credentials (AuthenticationError); check ...``.

    Any known secret is hidden, whatever message carried it.
    """
    if not with_type:
        text = str(exc)
    elif isinstance(exc, APIStatusError):
        text = f"HTTP {exc.status_code}: {exc.message} ({type(exc).__name__})"
        text += _HINTS.get(exc.status_code, "")
        if exc.request_id:
            text += f"; request id {exc.request_id}"
    else:
        text = f"{exc} ({type(exc).__name__})"
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return redact_text(text)


_HINTS = {
    401: "; check the username and secret key (SIGMA_USERNAME, SIGMA_SECRET_KEY)",
    403: "; check the app id (SIGMA_APP_ID) and the credential's permission group",
}


def failure_record(index: int, name: str, exc: BaseException) -> dict[str, Any]:
    """What ``create-many`` writes for an item that failed: never the spec itself (it may hold an S3 secret)."""
    message = getattr(exc, "message", None) or str(exc)
    return {
        "index": index,
        "name": name,
        "error": type(exc).__name__,
        "status": getattr(exc, "status_code", None),
        "message": redact_text(str(message)),
    }


def _ignore(done: int, total: int) -> None:
    return None


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or unusual stream
        return False
