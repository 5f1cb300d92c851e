"""NATS JetStream: a sink that publishes each record once, and a cursor store in a key-value bucket.

Needs the ``nats`` extra (``nats-py``), imported only when one of these is opened.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from ..transitions import Transition
from ._base import ACCEPTED, Outcome
from ._records import SUBJECT_PREFIX, subject_for

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.js.kv import KeyValue

__all__ = ["NatsCursorStore", "NatsSink", "connect", "split_nats_url"]

logger = logging.getLogger("sigma_async")

#: Seconds JetStream remembers a ``Nats-Msg-Id`` (its own default): a repeat within it is dropped.
DEFAULT_DUPLICATE_WINDOW: Final = 120.0
#: Cursor keys in the bucket are ``cursor.<session id, escaped>``; other prefixes are free for leases.
CURSOR_PREFIX: Final = "cursor."
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_KEY_ESCAPE = re.compile(r"=([0-9A-F]{2})")


def split_nats_url(url: str) -> tuple[str, str]:
    """``nats://host:4222/NAME`` -> (``nats://host:4222``, ``NAME``); ValueError if either part is missing."""
    parts = urlsplit(url)
    name = parts.path.strip("/")
    if parts.scheme not in ("nats", "tls") or not parts.hostname:
        raise ValueError("expected nats://HOST:PORT/NAME")
    if not _NAME.match(name):
        raise ValueError(f"a stream or bucket name of letters, digits, _ and - after the address, not {name!r}")
    return f"{parts.scheme}://{parts.netloc}", name


async def connect(server: str) -> Client:
    """A NATS connection that reconnects for ever (the relay's own retries ride over an outage)."""
    try:
        import nats
    except ImportError:
        raise ImportError(
            "the relay's nats:// sink and store need nats-py: pip install 'sigma-async[nats]'"
        ) from None

    async def on_error(exc: Exception) -> None:
        # Only the type and text: nats-py's own messages carry no credentials, but the server URL may.
        logger.warning("nats: %s: %s", type(exc).__name__, exc)

    return await nats.connect(
        servers=[server], name="sigma-async relay", max_reconnect_attempts=-1, error_cb=on_error, connect_timeout=5
    )


class NatsSink:
    """Publishes each record to JetStream on ``sigma.<session_id>.<kind>`` with ``Nats-Msg-Id: <id>``.

    The stream is created if missing (subjects ``sigma.>``, file storage). A repeat of a transition within the
    stream's duplicate window (default 120 s) is dropped by the server, so the stream holds each one once.
    A publish that is not acknowledged (timeout, no stream, server away) raises, and the runner retries it.
    """

    def __init__(self, nc: Client, stream: str, *, timeout: float = 5.0) -> None:
        self._nc = nc
        self._js = nc.jetstream(timeout=timeout)
        self.stream = stream

    @classmethod
    async def open(
        cls, url: str, *, duplicate_window: float = DEFAULT_DUPLICATE_WINDOW, timeout: float = 5.0
    ) -> NatsSink:
        """Connect to ``nats://HOST:PORT/STREAM`` and make sure the stream exists."""
        server, stream = split_nats_url(url)
        sink = cls(await connect(server), stream, timeout=timeout)
        try:
            await sink._ensure_stream(duplicate_window)
        except BaseException:
            await sink.aclose()
            raise
        return sink

    async def _ensure_stream(self, duplicate_window: float) -> None:
        from nats.js.api import StorageType
        from nats.js.errors import NotFoundError

        try:
            await self._js.stream_info(self.stream)
        except NotFoundError:
            # Two relays starting together may both get here: creating the same stream twice is a no-op.
            await self._js.add_stream(
                name=self.stream, subjects=[f"{SUBJECT_PREFIX}.>"], storage=StorageType.FILE,
                duplicate_window=duplicate_window,
            )

    async def deliver(self, record: bytes, transition: Transition) -> Outcome:
        headers = {"Nats-Msg-Id": transition.id} if transition.id else None
        await self._js.publish(subject_for(transition), record, stream=self.stream, headers=headers)
        return ACCEPTED

    async def aclose(self) -> None:
        await self._nc.close()

    def __repr__(self) -> str:
        return f"NatsSink(stream={self.stream!r})"


class NatsCursorStore:
    """Cursors in a JetStream key-value bucket (created if missing), one key per session: ``cursor.<id>``.

    The bucket is the one replicas share (their leases live beside the cursors), so a replica that takes over
    a session resumes from the cursor the previous owner saved.
    """

    def __init__(self, nc: Client, kv: KeyValue, bucket: str) -> None:
        self._nc = nc
        self.kv = kv
        self.bucket = bucket

    @classmethod
    async def open(cls, url: str, *, timeout: float = 5.0) -> NatsCursorStore:
        """Connect to ``nats://HOST:PORT/BUCKET`` and make sure the bucket exists."""
        from nats.js.errors import BucketNotFoundError

        server, bucket = split_nats_url(url)
        nc = await connect(server)
        try:
            js = nc.jetstream(timeout=timeout)
            try:
                kv = await js.key_value(bucket)
            except BucketNotFoundError:
                kv = await js.create_key_value(bucket=bucket, history=1)
        except BaseException:
            await nc.close()
            raise
        return cls(nc, kv, bucket)

    async def load(self, key: str) -> str | None:
        from nats.js.errors import KeyNotFoundError

        try:
            entry = await self.kv.get(cursor_key(key))
        except KeyNotFoundError:
            return None
        return entry.value.decode() if entry.value else None

    async def load_all(self) -> dict[str, str]:
        watcher: Any = await self.kv.watch(f"{CURSOR_PREFIX}>", ignore_deletes=True)
        found: dict[str, str] = {}
        try:
            # The watcher gives the latest value of each key, then None once it has caught up.
            async for entry in watcher:
                if entry is None:
                    break
                if entry.value:
                    found[session_of(entry.key)] = entry.value.decode()
        finally:
            await watcher.stop()
        return found

    async def save(self, key: str, cursor: str) -> None:
        await self.kv.put(cursor_key(key), cursor.encode())

    async def aclose(self) -> None:
        await self._nc.close()

    def __repr__(self) -> str:
        return f"NatsCursorStore(bucket={self.bucket!r})"


def cursor_key(session_id: str) -> str:
    """The bucket key of a session's cursor; ids may hold ``.`` and ``~``, which keys cannot, so they are escaped."""
    return CURSOR_PREFIX + _KEY_UNSAFE.sub(lambda m: f"={ord(m.group()):02X}", session_id)


def session_of(key: str) -> str:
    """The session id a ``cursor_key`` was made from."""
    return _KEY_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), key[len(CURSOR_PREFIX) :])
