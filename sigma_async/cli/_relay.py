"""``sigma-async relay``: push every transition of the watched sessions and channels to a sink, durably."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import anyio

from .._client import SigmaClient
from ..relay import Ownership, Relay, RelayConfig, load_config, open_sink, open_store
from ..relay._config import WEBHOOK_SECRET_ENV
from ._commands import UsageError, positive
from ._output import Output

__all__ = ["add_parser", "run"]

DESCRIPTION = """\
Watch sessions and channels and deliver each transition to a sink, per session in order, each record carrying
the transition's id. Cursors are saved after the sink accepts a record, so a restart resumes where the last run
stopped: nothing is lost, and what may go out twice carries the same id.

SINK   -  |  file:PATH  |  http(s)://URL (webhook)  |  nats://HOST:PORT/STREAM (JetStream)
STORE  memory: (default)  |  file:PATH  |  nats://HOST:PORT/BUCKET (JetStream KV; needed for --replica)
"""

EPILOG = """\
It exits 0 when every watched session has ended and no channel is watched, and on SIGTERM or SIGINT once the
deliveries in flight have finished. The webhook secret is better given as SIGMA_WEBHOOK_SECRET than as a flag.
Common options (--timeout, -v, credentials) go before or after the command: see sigma-async -h.
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
    parser.add_argument("--session", action="append", default=[], metavar="ID", help="a session to watch (repeat)")
    parser.add_argument("--channel", action="append", default=[], metavar="ID", help="a channel to follow (repeat)")
    parser.add_argument("--config", metavar="FILE", help="a TOML file with any of these settings (flags win)")
    parser.add_argument("--interval", type=positive, metavar="S", help="seconds between polls (default: 2)")
    parser.add_argument("--poll", choices=POLL_MODES, help="polling strategy (default: lean)")
    parser.add_argument("--replica", metavar="NAME", help="share the watch list with other replicas (nats:// store)")
    parser.add_argument("--lease-ttl", type=positive, metavar="S", help="replica lease lifetime (default: 15)")
    parser.add_argument("--webhook-secret", metavar="S", help=f"sign webhook bodies (or {WEBHOOK_SECRET_ENV})")
    parser.add_argument("--metrics-port", type=int, metavar="N", help="serve Prometheus metrics and /healthz here")
    parser.set_defaults(handler=run, subparser=parser)
    return parser


async def run(client: SigmaClient, args: argparse.Namespace, out: Output) -> int:
    """Relay until nothing is left to watch or a signal; 1 if a watch failed for good."""
    config = _settings(args)
    if not config.sink:
        raise UsageError("relay needs --sink (or sink = ... in --config)")
    if not config.sessions and not config.channels:
        raise UsageError("relay needs something to watch: --session ID or --channel ID (or --config)")
    store_spec = config.store or "memory:"
    if config.replica and not store_spec.startswith(("nats://", "tls://")):
        raise UsageError("--replica needs a shared store: --store nats://HOST:PORT/BUCKET")
    secret = config.webhook_secret or None
    monitor_kw: dict[str, Any] = {"poll": config.poll} if config.poll else {}

    try:
        sink = await open_sink(config.sink, webhook_secret=secret)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    relay: Relay | None = None
    ran = False  # once run() has begun, it closes the sink and the store itself
    try:
        try:
            store = await open_store(store_spec)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        try:
            async with _ownership(config, store_spec) as ownership:
                relay = Relay(
                    client, sink, store, session_ids=config.sessions, channel_ids=config.channels,
                    interval=config.interval or 2.0, ownership=ownership, **monitor_kw,
                )
                async with _metrics(config.metrics_port, relay, out), anyio.create_task_group() as tg:
                    tg.start_soon(_stop_on_signal, relay, name="sigma-async relay signals")
                    ran = True
                    await relay.run()
                    tg.cancel_scope.cancel()
        finally:
            if not ran:
                await store.aclose()
    finally:
        if not ran:
            await sink.aclose()
    assert relay is not None
    stats = relay.stats
    out.note(f"relay: {stats.delivered} delivered, {stats.rejected} rejected, {stats.retried} retries")
    return 1 if relay.failures else 0


async def _stop_on_signal(relay: Relay) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
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
async def _metrics(port: int | None, relay: Relay, out: Output) -> AsyncIterator[None]:
    """Prometheus text and /healthz on --metrics-port while the relay runs (the ``metrics`` extra)."""
    if port is None:
        yield
        return
    from ..relay._metrics import serve_metrics

    async with serve_metrics(port, relay):
        out.note(f"relay: metrics on port {port} (/metrics, /healthz)")
        yield


def _settings(args: argparse.Namespace) -> RelayConfig:
    """The config file's settings, overridden by flags; watch lists are the union of both."""
    try:
        config = load_config(args.config) if args.config else RelayConfig()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    for name in ("sink", "store", "interval", "poll", "replica", "lease_ttl", "metrics_port"):
        value = getattr(args, name)
        if value is not None:
            setattr(config, name, value)
    config.sessions = list(dict.fromkeys([*config.sessions, *args.session]))
    config.channels = list(dict.fromkeys([*config.channels, *args.channel]))
    config.webhook_secret = args.webhook_secret or os.environ.get(WEBHOOK_SECRET_ENV) or config.webhook_secret
    if config.poll is not None and config.poll not in POLL_MODES:
        raise UsageError(f"poll must be one of {', '.join(POLL_MODES)}, not {config.poll!r}")
    return config


