"""``sigma-async relay``: push every transition of the watched sessions and channels to a sink, durably."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from collections.abc import AsyncIterator
from typing import Any

import anyio
from anyio.abc import TaskStatus

from .._client import SigmaClient
from ..relay import Ownership, Relay, RelayConfig, SetupError, load_config, open_sink, open_store
from ..relay._config import WEBHOOK_SECRET_ENV, describe_spec, parse_address, split_session
from ..relay._deadletter import default_dead_letter
from ._commands import UsageError, positive
from ._output import Output

__all__ = ["add_parser", "run"]

DESCRIPTION = """\
Watch sessions and channels and deliver each transition to a sink, per session in order, each record carrying
the transition's id. Cursors are saved after the sink accepts a record, so a restart resumes where the last run
stopped: nothing is lost, and what may go out twice carries the same id.

SINK   -  |  file:PATH  |  http(s)://URL (webhook)  |  nats://HOST:PORT/STREAM[?prefix=P] (JetStream)
STORE  memory: (default)  |  file:PATH  |  nats://HOST:PORT/BUCKET (JetStream KV; needed for --replica)
"""

EPILOG = """\
A webhook's 2xx accepts a record; 400, 409, 410, 413 and 422 reject it, and it goes to the dead-letter
(--dead-letter SINK; default: rejected.jsonl beside a file: store, else stderr) with the receiver's status and
answer; any other answer (401, 403, 404, 429, 5xx, ...) is retried with backoff until an operator fixes it.

It exits 0 when every watched session has ended and no channel is watched, and on SIGTERM or SIGINT once the
deliveries in flight have finished; 1 if a watch failed for good or NATS cannot serve it (unreachable at start,
a stream that does not take the prefix, the bucket deleted); 2 for a usage error. The webhook secret is better
given as SIGMA_WEBHOOK_SECRET than as a flag. Common options (--timeout, -v, credentials) go before or after the
command: see sigma-async -h.
"""

POLL_MODES = ("lean", "full", "feed", "auto")


def add_parser(commands: Any, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Register ``relay`` (see ``cli._main.COMMAND_MODULES``)."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "relay", parents=[common], help="push transitions to a file, a signed webhook or NATS, durably",
        description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--sink", metavar="SINK", help="where records go (see above)")
    parser.add_argument("--store", metavar="STORE", help="where cursors are kept (default: memory:)")
    parser.add_argument("--session", action="append", default=[], metavar="ID[@CHANNEL]",
                        help="a session to watch (repeat); @CHANNEL fills its records' channel_id")
    parser.add_argument("--channel", action="append", default=[], metavar="ID", help="a channel to follow (repeat)")
    parser.add_argument("--config", metavar="FILE", help="a TOML file with any of these settings (flags win)")
    parser.add_argument("--interval", type=positive, metavar="S", help="seconds between polls (default: 2)")
    parser.add_argument("--poll", choices=POLL_MODES, help="polling strategy (default: lean)")
    parser.add_argument("--replica", metavar="NAME", help="share the watch list with other replicas (nats:// store)")
    parser.add_argument("--lease-ttl", type=positive, metavar="S", help="replica lease lifetime (default: 15)")
    parser.add_argument("--webhook-secret", metavar="S", help=f"sign webhook bodies (or {WEBHOOK_SECRET_ENV})")
    parser.add_argument("--dead-letter", metavar="SINK",
                        help="where rejected records go (default: rejected.jsonl beside a file: store, else stderr)")
    parser.add_argument("--playback", action="store_true", default=None,
                        help="judge each session's HLS output too: playback_stalled / playback_resumed records")
    parser.add_argument("--playback-stall-after", type=positive, metavar="S",
                        help="seconds without an advance that make a stall (default: 3 target durations)")
    parser.add_argument("--metrics-addr", metavar="HOST:PORT",
                        help="serve Prometheus metrics and /healthz here (127.0.0.1:9464 for this host only)")
    parser.add_argument("--metrics-port", type=_port, metavar="N",
                        help="the same on every interface, as exporters do: --metrics-addr 0.0.0.0:N")
    parser.set_defaults(handler=run, subparser=parser)
    return parser


async def run(client: SigmaClient, args: argparse.Namespace, out: Output) -> int:
    """Relay until nothing is left to watch or a signal; 1 if a watch failed for good or NATS cannot serve it."""
    config = _settings(args)
    try:
        return await _relay(client, config, out)
    except SetupError as exc:
        out.error(str(exc))
        return 1


async def _relay(client: SigmaClient, config: RelayConfig, out: Output) -> int:
    assert config.sink is not None
    store_spec = config.store or "memory:"
    dead_spec = config.dead_letter or default_dead_letter(store_spec)
    secret = config.webhook_secret or None
    sessions = [split_session(s) for s in config.sessions]
    monitor_kw: dict[str, Any] = {"poll": config.poll} if config.poll else {}
    if config.playback:
        monitor_kw.update(playback=True, playback_stall_after=config.playback_stall_after)
    metrics_at = _metrics_address(config)

    relay: Relay | None = None
    async with contextlib.AsyncExitStack() as opened:
        # Until run() begins, what is opened here is closed here; from then on run() closes it itself.
        sink = await _opened(opened, open_sink(config.sink, webhook_secret=secret))
        dead_letter = await _opened(opened, open_sink(dead_spec, webhook_secret=secret))
        store = await _opened(opened, open_store(store_spec))
        async with _ownership(config, store_spec) as ownership:
            relay = Relay(
                client, sink, store, session_ids=[sid for sid, _ in sessions], channel_ids=config.channels,
                session_channels={sid: cid for sid, cid in sessions if cid}, interval=config.interval or 2.0,
                ownership=ownership, dead_letter=dead_letter, **monitor_kw,
            )  # fmt: skip
            async with _metrics(metrics_at, relay) as port, anyio.create_task_group() as tg:
                await tg.start(_stop_on_signal, relay, name="sigma-async relay signals")
                out.note(_started_line(config, store_spec, dead_spec, metrics_at, port))
                opened.pop_all()
                await relay.run()
                tg.cancel_scope.cancel()
    assert relay is not None
    stats = relay.stats
    rejected = f"{stats.rejected} rejected" + (f" ({stats.dead_lettered} to {dead_spec})" if stats.rejected else "")
    out.note(f"relay: {stats.delivered} delivered, {rejected}, {stats.retried} retries")
    return 1 if relay.failures else 0


async def _opened(stack: contextlib.AsyncExitStack, opening: Any) -> Any:
    """Await an ``open_sink``/``open_store``, a bad spec being a usage error, and close it with ``stack``."""
    try:
        part = await opening
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    stack.push_async_callback(part.aclose)
    return part


async def _stop_on_signal(relay: Relay, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
    if threading.current_thread() is not threading.main_thread():
        task_status.started()  # signals reach the main thread only (main() run from a thread, in tests)
        return
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        task_status.started()  # from here on a signal stops the relay gently
        async for _ in signals:
            print("sigma-async relay: stopping after the deliveries in flight", file=sys.stderr, flush=True)
            relay.stop()


@contextlib.asynccontextmanager
async def _ownership(config: RelayConfig, store_spec: str) -> AsyncIterator[Ownership | None]:
    """Leases in the store's bucket with --replica; otherwise this process owns the whole list."""
    if not config.replica:
        yield None
        return
    from ..relay._leases import ReplicaLeases, open_bucket

    async with open_bucket(store_spec) as kv:
        yield ReplicaLeases(kv, replica=config.replica, ttl=config.lease_ttl or 15.0)


@contextlib.asynccontextmanager
async def _metrics(address: tuple[str, int] | None, relay: Relay) -> AsyncIterator[int | None]:
    """Prometheus text and /healthz while the relay runs (the ``metrics`` extra); yields the port listened on."""
    if address is None:
        yield None
        return
    from ..relay._metrics import serve_metrics

    host, port = address
    try:
        async with serve_metrics(port, relay, host=host) as metrics:
            yield metrics.port
    except OSError as exc:
        raise SetupError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from None


def _metrics_address(config: RelayConfig) -> tuple[str, int] | None:
    if config.metrics_addr is not None and config.metrics_port is not None:
        raise UsageError("give --metrics-addr HOST:PORT or --metrics-port N, not both")
    if config.metrics_addr is not None:
        try:
            return parse_address(config.metrics_addr)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    return None if config.metrics_port is None else ("0.0.0.0", config.metrics_port)


def _started_line(
    config: RelayConfig, store_spec: str, dead_spec: str, metrics_at: tuple[str, int] | None, port: int | None
) -> str:
    """What the relay watches and where everything goes, without credentials: one line, at start."""
    watched = [_count(len(config.sessions), "session"), _count(len(config.channels), "channel")]
    what = " and ".join(w for w in watched if w)
    sink = describe_spec(config.sink or "")
    if sink.startswith(("http://", "https://")):
        sink += " (signed)" if config.webhook_secret else " (unsigned)"
    parts = [f"relay: watching {what}", f"sink {sink}", f"store {describe_spec(store_spec)}",
             f"rejected records to {describe_spec(dead_spec)}"]
    if config.replica:
        parts.append(f"replica {config.replica} (lease TTL {config.lease_ttl or 15.0:g} s)")
    if metrics_at is not None:
        host = f"[{metrics_at[0]}]" if ":" in metrics_at[0] else metrics_at[0]
        parts.append(f"metrics on http://{host}:{port}/metrics")
    return "; ".join(parts)


def _count(n: int, noun: str) -> str:
    return "" if not n else f"{n} {noun}" + ("" if n == 1 else "s")


def _settings(args: argparse.Namespace) -> RelayConfig:
    """The config file's settings, overridden by flags; watch lists are the union of both. Usage errors here."""
    try:
        config = load_config(args.config) if args.config else RelayConfig()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    for name in ("sink", "store", "interval", "poll", "replica", "lease_ttl", "metrics_port", "metrics_addr",
                 "dead_letter", "playback", "playback_stall_after"):
        value = getattr(args, name)
        if value is not None:
            setattr(config, name, value)
    config.sessions = list(dict.fromkeys([*config.sessions, *args.session]))
    config.channels = list(dict.fromkeys([*config.channels, *args.channel]))
    config.webhook_secret = args.webhook_secret or os.environ.get(WEBHOOK_SECRET_ENV) or config.webhook_secret
    if config.poll is not None and config.poll not in POLL_MODES:
        raise UsageError(f"poll must be one of {', '.join(POLL_MODES)}, not {config.poll!r}")
    try:
        config.check()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not config.sink:
        raise UsageError("relay needs --sink (or sink = ... in --config)")
    if not config.sessions and not config.channels:
        raise UsageError("relay needs something to watch: --session ID or --channel ID (or --config)")
    if config.replica and not (config.store or "").startswith(("nats://", "tls://")):
        raise UsageError("--replica needs a shared store: --store nats://HOST:PORT/BUCKET")
    return config


def _port(text: str) -> int:
    """An argparse type: a TCP port, 0 to 65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port from 0 to 65535, got {text}")
    return value

