"""JetStream KV plumbing for the relay's leases: opening the bucket, reading it whole, telling a lost CAS apart."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import anyio

__all__ = ["each", "open_bucket", "snapshot", "wrong_last"]

# CAS writes in flight at once when taking or renewing many leases: enough to hide round trips, few enough to
# leave the server room for the watches' own traffic.
_WRITES_IN_FLIGHT = 64
# JetStream's "wrong last sequence" error codes: the CAS lost.
_WRONG_LAST = (10071, 10164)


@contextlib.asynccontextmanager
async def open_bucket(store_url: str, *, timeout: float = 5.0) -> AsyncIterator[Any]:
    """Connect to ``nats://HOST:PORT/BUCKET`` and yield the KV bucket, created with file storage if missing."""
    from ._nats import connect, split_nats_url

    server, bucket = split_nats_url(store_url)
    try:
        nc = await connect(server)
    except OSError as exc:  # nats-py's "no servers available" is an OSError too
        raise ConnectionError(f"cannot reach the lease store at {server}: {exc}") from exc
    try:
        from nats.js.api import KeyValueConfig, StorageType
        from nats.js.errors import BucketNotFoundError

        js = nc.jetstream(timeout=timeout)
        try:
            kv = await js.key_value(bucket)
        except BucketNotFoundError:
            # Two replicas starting together may both get here; creating with the same config is idempotent.
            kv = await js.create_key_value(KeyValueConfig(bucket=bucket, history=1, storage=StorageType.FILE))
        yield kv
    finally:
        with anyio.CancelScope(shield=True):
            await nc.close()


def wrong_last(exc: BaseException) -> bool:
    """True when a CAS lost (the revision moved on), as opposed to a write whose answer never came."""
    from nats.js.errors import KeyWrongLastSequenceError

    return isinstance(exc, KeyWrongLastSequenceError) or getattr(exc, "err_code", None) in _WRONG_LAST


async def snapshot(kv: Any, prefix: str, timeout: float) -> dict[str, Any]:
    """The latest entry of every key under ``prefix`` (deleted ones included, as such)."""
    found: dict[str, Any] = {}
    watcher = await kv.watch(prefix + ">")
    try:
        with anyio.fail_after(timeout):
            async for entry in watcher:
                if entry is None:  # nats-py's marker: everything pending has been delivered
                    break
                found[entry.key] = entry
                if entry.delta == 0:
                    break
    finally:
        with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
            await watcher.stop()
    return found


async def each(items: Iterable[Any], action: Callable[[Any], Awaitable[None]]) -> None:
    """Run ``action`` on every item, a bounded number at once."""
    limiter = anyio.CapacityLimiter(_WRITES_IN_FLIGHT)

    async def one(item: Any) -> None:
        async with limiter:
            await action(item)

    async with anyio.create_task_group() as tg:
        for item in items:
            tg.start_soon(one, item)
