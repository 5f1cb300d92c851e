"""JetStream key-value: the cursor store replicas share, and the plumbing their leases use (opening the bucket,
reading it whole, telling a lost compare-and-set apart, erasing a key without leaving a marker behind).

>>> store = await NatsCursorStore.open("nats://127.0.0.1:4222/sigma-relay")
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Final

import anyio

from ._base import StaleCursorError, StoreLostError
from ._nats import CONNECT_ATTEMPTS, connect, redact_server, split_nats_url

if TYPE_CHECKING:
    from nats.aio.client import Client

__all__ = [
    "CURSOR_PREFIX",
    "NatsCursorStore",
    "check_bucket",
    "cursor_key",
    "each",
    "erase",
    "open_bucket",
    "session_of",
    "snapshot",
    "wrong_last",
]

logger = logging.getLogger("sigma_async")

#: Cursor keys in the bucket are ``cursor.<session id, escaped>``; other prefixes are free for leases.
CURSOR_PREFIX: Final = "cursor."
# CAS writes in flight at once when taking or renewing many leases: enough to hide round trips, few enough to
# leave the server room for the watches' own traffic.
_WRITES_IN_FLIGHT = 64
# JetStream's "wrong last sequence" error codes: the CAS lost.
_WRONG_LAST = (10071, 10164)
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_KEY_ESCAPE = re.compile(r"=([0-9A-F]{2})")


class NatsCursorStore:
    """Cursors in a JetStream key-value bucket (created if missing), one key per session: ``cursor.<id>``.

    The bucket is the one replicas share (their leases live beside the cursors), so a replica that takes over a
    session resumes from the cursor the previous owner saved. Every save is a compare-and-set on the revision this
    store last read or wrote for that key, so a replica that was paused cannot overwrite a newer cursor: its
    save raises ``StaleCursorError``. ``drop`` erases a key outright (no delete marker stays behind), so the
    bucket holds the live sessions and the done-markers of listed ones, never the whole history. A bucket deleted
    while the relay runs is ``StoreLostError``.
    """

    def __init__(self, nc: Client, kv: Any, bucket: str) -> None:
        self._nc = nc
        self.kv = kv
        self.bucket = bucket
        self._revisions: dict[str, int] = {}  # key -> revision last read or written here (0: known absent)

    @classmethod
    async def open(cls, url: str, *, timeout: float = 5.0, attempts: int = CONNECT_ATTEMPTS) -> NatsCursorStore:
        """Connect to ``nats://HOST:PORT/BUCKET`` and make sure the bucket exists."""
        server, bucket = split_nats_url(url)
        nc = await connect(server, attempts=attempts)
        try:
            kv = await _bucket(nc, bucket, timeout)
        except BaseException:
            await nc.close()
            raise
        return cls(nc, kv, bucket)

    async def load(self, key: str) -> str | None:
        from nats.js.errors import KeyNotFoundError

        try:
            entry = await self.kv.get(cursor_key(key))
        except KeyNotFoundError:
            self._revisions[key] = 0
            return None
        self._revisions[key] = entry.revision
        return entry.value.decode() if entry.value else None

    async def load_all(self) -> dict[str, str]:
        found: dict[str, str] = {}
        for entry in (await snapshot(self.kv, CURSOR_PREFIX, timeout=30.0)).values():
            key = session_of(entry.key)
            if entry.value and entry.operation not in ("DEL", "PURGE"):
                found[key] = entry.value.decode()
                self._revisions[key] = entry.revision
        return found

    async def save(self, key: str, cursor: str) -> None:
        from nats.js.errors import NoStreamResponseError

        last = self._revisions.get(key, 0)
        try:
            if last:
                revision = await self.kv.update(cursor_key(key), cursor.encode(), last=last)
            else:
                revision = await self.kv.create(cursor_key(key), cursor.encode())
        except NoStreamResponseError:
            await check_bucket(self.kv)
            raise
        except Exception as exc:
            if not wrong_last(exc):
                raise
            self._revisions.pop(key, None)
            raise StaleCursorError(f"session {key}: its cursor was saved elsewhere since it was read here") from None
        self._revisions[key] = revision

    async def drop(self, key: str) -> None:
        await erase(self.kv, cursor_key(key))
        self._revisions.pop(key, None)

    async def aclose(self) -> None:
        await self._nc.close()

    def __repr__(self) -> str:
        return f"NatsCursorStore(bucket={self.bucket!r})"


@contextlib.asynccontextmanager
async def open_bucket(store_url: str, *, timeout: float = 5.0, attempts: int = CONNECT_ATTEMPTS) -> AsyncIterator[Any]:
    """Connect to ``nats://HOST:PORT/BUCKET`` and yield the KV bucket, created with file storage if missing."""
    server, bucket = split_nats_url(store_url)
    nc = await connect(server, attempts=attempts)
    try:
        yield await _bucket(nc, bucket, timeout)
    finally:
        with anyio.CancelScope(shield=True):
            await nc.close()


async def _bucket(nc: Client, bucket: str, timeout: float) -> Any:
    from nats.js.api import KeyValueConfig, StorageType
    from nats.js.errors import BucketNotFoundError

    js = nc.jetstream(timeout=timeout)
    try:
        return await js.key_value(bucket)
    except BucketNotFoundError:
        # Two replicas starting together may both get here; creating with the same config is idempotent.
        return await js.create_key_value(KeyValueConfig(bucket=bucket, history=1, storage=StorageType.FILE))


def wrong_last(exc: BaseException) -> bool:
    """True when a CAS lost (the revision moved on), as opposed to a write whose answer never came."""
    from nats.js.errors import KeyWrongLastSequenceError

    return isinstance(exc, KeyWrongLastSequenceError) or getattr(exc, "err_code", None) in _WRONG_LAST


async def check_bucket(kv: Any) -> None:
    """Raise ``StoreLostError`` if the bucket's stream is gone (deleted); return if it is there or unknown."""
    from nats.js.errors import NotFoundError

    js, stream = getattr(kv, "_js", None), getattr(kv, "_stream", None)
    if js is None or stream is None:  # nats-py keeps the bucket's stream and context only privately
        return
    try:
        await js.stream_info(stream)
    except NotFoundError:
        raise StoreLostError(
            f"the KV bucket {getattr(kv, '_name', stream)} was deleted while the relay ran: its cursors and "
            "leases are gone. Start the relay again: it creates the bucket and resumes each session from its "
            "start (records repeat, with the same ids)"
        ) from None
    except Exception:  # the server is away: an outage, retried like any other
        return


async def erase(kv: Any, key: str) -> None:
    """Remove every revision of ``key``, leaving no delete marker (which a history-1 bucket would keep for ever)."""
    js, stream, prefix = getattr(kv, "_js", None), getattr(kv, "_stream", None), getattr(kv, "_pre", None)
    if js is None or stream is None or prefix is None:
        await kv.purge(key)  # another client library's bucket: a purge leaves one small marker
        return
    await js.purge_stream(stream, subject=prefix + key)


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


def cursor_key(session_id: str) -> str:
    """The bucket key of a session's cursor; ids may hold ``.`` and ``~``, which keys cannot, so they are escaped."""
    return CURSOR_PREFIX + _KEY_UNSAFE.sub(lambda m: f"={ord(m.group()):02X}", session_id)


def session_of(key: str) -> str:
    """The session id a ``cursor_key`` was made from."""
    return _KEY_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), key[len(CURSOR_PREFIX) :])


def shown_store(url: str) -> str:
    """A ``nats://`` store or sink URL as logs show it: without user info."""
    server, name = split_nats_url(url)
    return f"{redact_server(server)}/{name}"
