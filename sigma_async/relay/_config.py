"""The relay's settings: sink and store specs, and the config file (TOML).

>>> sink = await open_sink("https://hooks.example.com/sigma", webhook_secret=secret)
>>> store = await open_store("file:/var/lib/sigma-relay/cursors.json")

A config file holds the same settings as the command line, flat, with ``_`` for ``-``::

    sink = "nats://127.0.0.1:4222/SIGMA"
    store = "nats://127.0.0.1:4222/sigma-relay"
    sessions = ["6630c2...", "6630c3..."]
    channels = ["65f0a1..."]
    interval = 2.0
    poll = "lean"
    dead_letter = "file:/var/lib/sigma-relay/rejected.jsonl"
    metrics_addr = "127.0.0.1:9464"
"""

from __future__ import annotations

import ast
import math
import os
import re
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .._protocol import check_id
from ._base import CursorStore, Sink
from ._http import redact_url
from ._nats import CONNECT_ATTEMPTS, redact_server
from ._sinks import FileSink, StderrSink, WebhookSink
from ._stores import FileCursorStore, MemoryCursorStore

__all__ = [
    "RelayConfig",
    "describe_spec",
    "load_config",
    "open_sink",
    "open_store",
    "parse_address",
    "parse_toml",
    "split_session",
]

#: Where the webhook secret is read from when no flag gives it.
WEBHOOK_SECRET_ENV = "SIGMA_WEBHOOK_SECRET"


@dataclass
class RelayConfig:
    """Settings from a config file; each is None (or empty) where the file does not give it."""

    sink: str | None = None
    store: str | None = None
    sessions: list[str] = field(default_factory=list)
    channels: list[str] = field(default_factory=list)
    interval: float | None = None
    poll: str | None = None
    replica: str | None = None
    lease_ttl: float | None = None
    webhook_secret: str | None = field(default=None, repr=False)
    metrics_port: int | None = None
    metrics_addr: str | None = None
    dead_letter: str | None = None
    playback: bool | None = None
    playback_stall_after: float | None = None

    def __repr__(self) -> str:
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.name != "webhook_secret")
        return f"RelayConfig({shown}, webhook_secret={'set' if self.webhook_secret else None})"

    def check(self) -> None:
        """``ValueError`` naming the first setting that cannot work: a number out of range, a bad address."""
        for name in ("interval", "lease_ttl", "playback_stall_after"):
            value = getattr(self, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a number of seconds > 0 (and finite), not {value!r}")
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise ValueError(f"metrics_port must be a port number from 0 to 65535, not {self.metrics_port}")
        if self.metrics_addr is not None:
            parse_address(self.metrics_addr)
        for sid in self.sessions:
            split_session(sid)
        if self.playback:
            bare = [s for s in self.sessions if split_session(s)[1] is None]
            if bare:
                raise ValueError(
                    f"playback needs each session's channel (the API cannot tell it): --session {bare[0]}@CHANNEL"
                )


_TYPES: dict[str, tuple[type, ...]] = {
    "sink": (str,), "store": (str,), "sessions": (list,), "channels": (list,), "interval": (int, float),
    "poll": (str,), "replica": (str,), "lease_ttl": (int, float), "webhook_secret": (str,), "metrics_port": (int,),
    "metrics_addr": (str,), "dead_letter": (str,), "playback": (bool,), "playback_stall_after": (int, float),
}


def load_config(path: str | os.PathLike[str]) -> RelayConfig:
    """Read a relay config file; ``ValueError`` naming the file and the problem."""
    where = os.fspath(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read config file {where}: {exc.strerror or exc}") from None
    try:
        data = parse_toml(text)
    except ValueError as exc:
        raise ValueError(f"config file {where}: {exc}") from None
    config = RelayConfig()
    value: Any
    for raw_name, value in data.items():
        name = raw_name.replace("-", "_")
        types = _TYPES.get(name)
        if types is None:
            raise ValueError(f"config file {where}: unknown setting {raw_name!r} (known: {', '.join(_TYPES)})")
        if isinstance(value, bool) or not isinstance(value, types):
            raise ValueError(f"config file {where}: {raw_name} has the wrong type ({type(value).__name__})")
        if isinstance(value, list) and not all(isinstance(v, str) for v in value):
            raise ValueError(f"config file {where}: {raw_name} must be a list of id strings")
        setattr(config, name, float(data[raw_name]) if name in ("interval", "lease_ttl") else value)
    try:
        config.check()
    except ValueError as exc:
        raise ValueError(f"config file {where}: {exc}") from None
    return config


def parse_toml(text: str) -> dict[str, Any]:
    """TOML with ``tomllib`` (Python 3.11+); on 3.10 a subset: top-level ``key = value`` with strings,
    numbers, booleans and arrays of those (arrays may span lines), and ``#`` comments."""
    if sys.version_info >= (3, 11):
        import tomllib

        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(str(exc)) from None
    return parse_toml_subset(text)


_LINE = re.compile(r"^\s*([A-Za-z0-9_-]+)\s*=\s*(.*)$")


def parse_toml_subset(text: str) -> dict[str, Any]:
    """The subset of TOML a relay config needs, for Python 3.10 (which has no ``tomllib``)."""
    result: dict[str, Any] = {}
    lines = iter(enumerate(text.splitlines(), 1))
    for number, line in lines:
        if not _strip_comment(line).strip():
            continue
        if line.lstrip().startswith("["):
            raise ValueError(f"line {number}: tables are not supported here; use top-level settings")
        match = _LINE.match(_strip_comment(line))
        if match is None:
            raise ValueError(f"line {number}: expected key = value")
        key, value = match.group(1), match.group(2).strip()
        # An array may go on over several lines, until its brackets balance.
        while value.startswith("[") and value.count("[") > value.count("]"):
            try:
                value += " " + _strip_comment(next(lines)[1]).strip()
            except StopIteration:
                raise ValueError(f"line {number}: unterminated array") from None
        if key in result:
            raise ValueError(f"line {number}: {key} given twice")
        result[key] = _value(value, number)
    return result


def _strip_comment(line: str) -> str:
    # A '#' starts a comment unless it is inside a string.
    quote: str | None = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            return line[:i]
    return line


def _value(text: str, number: int) -> Any:
    if text in ("true", "false"):
        return text == "true"
    if text.startswith("[") and text.endswith("]"):
        inner = text[1:-1].strip().rstrip(",")
        return [_value(part.strip(), number) for part in _split_items(inner)] if inner else []
    try:
        value = ast.literal_eval(text.replace("_", "") if text[:1].isdigit() else text)
    except (ValueError, SyntaxError):
        raise ValueError(f"line {number}: cannot read value {text[:40]!r}") from None
    if not isinstance(value, (str, int, float)):
        raise ValueError(f"line {number}: cannot read value {text[:40]!r}")
    return value


def _split_items(inner: str) -> list[str]:
    items, quote, start = [], None, 0
    for i, ch in enumerate(inner):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == ",":
            items.append(inner[start:i])
            start = i + 1
    items.append(inner[start:])
    return items


async def open_sink(spec: str, *, webhook_secret: str | None = None, attempts: int = CONNECT_ATTEMPTS) -> Sink:
    """``-`` | ``stderr`` | ``file:PATH`` | ``http(s)://URL`` | ``nats://HOST:PORT/STREAM[?prefix=P]``, opened.

    A ``file:`` sink's folder is created if missing. A NATS server that cannot be reached in ``attempts`` tries
    (a second apart) is ``SetupError``, as is a stream that does not take the prefix's subjects.
    """
    if spec == "-":
        return FileSink("-")
    if spec == "stderr":
        return StderrSink()
    if spec.startswith("file:"):
        path = spec[len("file:") :]
        if not path:
            raise ValueError("file: sink needs a path, e.g. file:transitions.jsonl")
        try:
            return FileSink(path)
        except OSError as exc:
            raise ValueError(f"cannot open the sink file {path}: {exc.strerror or exc}") from None
    if spec.startswith(("http://", "https://")):
        return WebhookSink(spec, secret=webhook_secret)
    if spec.startswith(("nats://", "tls://")):
        from ._nats import NatsSink, nats_prefix, split_nats_url

        split_nats_url(spec), nats_prefix(spec)  # a bad URL is a usage error before any connection is tried
        return await NatsSink.open(spec, attempts=attempts)
    raise ValueError(
        f"unknown sink {redact_url(spec)!r}: use -, stderr, file:PATH, http(s)://URL or nats://HOST:PORT/STREAM"
    )


async def open_store(spec: str, *, attempts: int = CONNECT_ATTEMPTS) -> CursorStore:
    """``memory:`` | ``file:PATH`` | ``nats://HOST:PORT/BUCKET``, opened and ready."""
    if spec == "memory:":
        return MemoryCursorStore()
    if spec.startswith("file:"):
        path = spec[len("file:") :]
        if not path:
            raise ValueError("file: store needs a path, e.g. file:cursors.json")
        try:
            return FileCursorStore(path)
        except OSError as exc:
            raise ValueError(f"cannot use the store file {path}: {exc.strerror or exc}") from None
    if spec.startswith(("nats://", "tls://")):
        from ._kv import NatsCursorStore
        from ._nats import split_nats_url

        split_nats_url(spec)
        return await NatsCursorStore.open(spec, attempts=attempts)
    raise ValueError(f"unknown store {redact_url(spec)!r}: use memory:, file:PATH or nats://HOST:PORT/BUCKET")


def describe_spec(spec: str) -> str:
    """A sink or store spec as the relay prints it: without credentials, a webhook's query or NATS user info."""
    if spec.startswith(("http://", "https://")):
        return redact_url(spec)
    if spec.startswith(("nats://", "tls://")):
        from urllib.parse import urlsplit

        parts = urlsplit(spec)
        query = f"?{parts.query}" if parts.query.startswith("prefix=") and "&" not in parts.query else ""
        return f"{redact_server(spec)}{parts.path}{query}"
    return spec


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9464`` for IPv6; ``:9464`` for every interface) -> (host, port); ValueError."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isascii() or not port_text.isdigit():
        raise ValueError(f"metrics_addr must be HOST:PORT, e.g. 127.0.0.1:9464, not {text!r}")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"metrics_addr's port must be from 0 to 65535, not {port}")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    return host or "0.0.0.0", port


def split_session(text: str) -> tuple[str, str | None]:
    """``ID`` or ``ID@CHANNEL`` -> (session id, channel id or None); ValueError naming what is wrong."""
    sid, sep, channel = text.partition("@")
    check_id(sid, "session id")
    if sep:
        check_id(channel, "channel id (after @)")
        return sid, channel
    return sid, None
