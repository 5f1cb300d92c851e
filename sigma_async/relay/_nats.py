"""NATS JetStream: connecting (and giving up at start), addresses, and a sink that publishes each record once.

The cursor store in a key-value bucket lives in ``_kv.py``. Needs the ``nats`` extra (``nats-py``), imported only
when a connection is opened.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qs, urlsplit

from ..transitions import Transition
from ._base import ACCEPTED, Outcome, SetupError
from ._records import SUBJECT_PREFIX, subject_for

if TYPE_CHECKING:
    from nats.aio.client import Client

__all__ = ["NatsSink", "connect", "nats_prefix", "redact_server", "split_nats_url"]

logger = logging.getLogger("sigma_async")

#: Seconds JetStream remembers a ``Nats-Msg-Id`` (its own default): a repeat within it is dropped.
DEFAULT_DUPLICATE_WINDOW: Final = 120.0
#: Attempts at the first connection, a second apart: a server starting beside the relay (compose, a pod) has
#: this long; past it the relay exits rather than wait in silence.
CONNECT_ATTEMPTS: Final = 8
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_PREFIX = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")


def split_nats_url(url: str) -> tuple[str, str]:
    """``nats://host:4222/NAME`` -> (``nats://host:4222``, ``NAME``); ValueError if either part is missing."""
    parts = urlsplit(url)
    name = parts.path.strip("/")
    if parts.scheme not in ("nats", "tls") or not parts.hostname:
        raise ValueError("expected nats://HOST:PORT/NAME")
    if not _NAME.match(name):
        raise ValueError(f"a stream or bucket name of letters, digits, _ and - after the address, not {name!r}")
    return f"{parts.scheme}://{parts.netloc}", name


def nats_prefix(url: str) -> str:
    """The subject prefix of a sink URL: ``?prefix=P`` (default ``sigma``); ValueError if it is not one."""
    values = parse_qs(urlsplit(url).query).get("prefix", [SUBJECT_PREFIX])
    prefix = values[-1]
    if not _PREFIX.match(prefix):
        raise ValueError(f"prefix must be subject tokens (letters, digits, _ and -, joined by .), not {prefix!r}")
    return prefix


def redact_server(server: str) -> str:
    """``nats://user:pass@host:4222/X`` as logs show it: ``nats://host:4222`` (user info is a credential)."""
    parts = urlsplit(server)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


async def connect(server: str, *, attempts: int = CONNECT_ATTEMPTS) -> Client:
    """A NATS connection: ``SetupError`` if the server cannot be reached in ``attempts`` tries (a second apart);
    once connected, it reconnects for ever (the relay's own retries ride over an outage)."""
    try:
        from nats.aio.client import Client
        from nats.errors import NoServersError
    except ImportError:
        raise ImportError(
            "the relay's nats:// sink and store need nats-py: pip install 'sigma-async[nats]'"
        ) from None

    shown = redact_server(server)
    connected = False
    failures: list[BaseException] = []

    async def on_error(exc: Exception) -> None:
        if not connected:
            failures.append(exc)  # said once, below, if the server never answers
            return
        # Only the type and text: nats-py's own messages carry no credentials, but the server URL may.
        logger.warning("nats: %s: %s", type(exc).__name__, exc)

    nc = Client()
    try:
        await nc.connect(
            servers=[server], name="sigma-async relay", error_cb=on_error, connect_timeout=2,
            reconnect_time_wait=1, max_reconnect_attempts=max(1, attempts - 1),
        )  # fmt: skip
    except NoServersError:
        await _close_quietly(nc)
        why = _describe(failures[-1]) if failures else "no answer"
        raise SetupError(f"cannot reach NATS at {shown} ({why}, {attempts} tries): is it running there?") from None
    except Exception as exc:
        await _close_quietly(nc)
        raise SetupError(f"NATS at {shown} refused the connection: {_describe(exc)}") from None
    connected = True
    nc.options["max_reconnect_attempts"] = -1  # the first connection is made: from now on, never give up
    return nc


class NatsSink:
    """Publishes each record to JetStream on ``<prefix>.<session_id>.<kind>`` with ``Nats-Msg-Id: <id>``.

    The stream is created if missing (subjects ``<prefix>.>``, file storage); one that exists must take those
    subjects, or ``open`` raises ``SetupError`` saying what to change. A repeat of a transition within the
    stream's duplicate window (default 120 s) is dropped by the server, so the stream holds each one once. A
    publish that is not acknowledged (timeout, server away) raises, and the runner retries it; a stream deleted
    while the relay runs is created again.
    """

    def __init__(
        self, nc: Client, stream: str, *, prefix: str = SUBJECT_PREFIX, timeout: float = 5.0,
        duplicate_window: float = DEFAULT_DUPLICATE_WINDOW,
    ) -> None:  # fmt: skip
        self._nc = nc
        self._js = nc.jetstream(timeout=timeout)
        self.stream = stream
        self.prefix = prefix
        self._duplicate_window = duplicate_window

    @classmethod
    async def open(
        cls, url: str, *, duplicate_window: float = DEFAULT_DUPLICATE_WINDOW, timeout: float = 5.0,
        attempts: int = CONNECT_ATTEMPTS,
    ) -> NatsSink:  # fmt: skip
        """Connect to ``nats://HOST:PORT/STREAM[?prefix=P]`` and make sure the stream takes ``P.>``."""
        server, stream = split_nats_url(url)
        prefix = nats_prefix(url)
        sink = cls(
            await connect(server, attempts=attempts), stream, prefix=prefix, timeout=timeout,
            duplicate_window=duplicate_window,
        )  # fmt: skip
        try:
            await sink._ensure_stream(redact_server(server))
        except BaseException:
            await sink.aclose()
            raise
        return sink

    async def _ensure_stream(self, shown: str) -> None:
        from nats.js.errors import NotFoundError

        try:
            info = await self._js.stream_info(self.stream)
        except NotFoundError:
            await self._create_stream(shown)
            return
        subjects = list(info.config.subjects or [])
        if not any(covers(pattern, self.prefix) for pattern in subjects):
            raise SetupError(
                f"stream {self.stream} on {shown} takes {', '.join(subjects) or 'no subjects'}, not "
                f"{self.prefix}.> where the relay publishes: add {self.prefix}.> to the stream's subjects, or "
                f"choose a prefix it takes (…/{self.stream}?prefix=P), or another stream"
            )

    async def _create_stream(self, shown: str) -> None:
        from nats.js.api import StorageType
        from nats.js.errors import BadRequestError

        try:
            # Two relays starting together may both get here: creating the same stream twice is a no-op.
            await self._js.add_stream(
                name=self.stream, subjects=[f"{self.prefix}.>"], storage=StorageType.FILE,
                duplicate_window=self._duplicate_window,
            )  # fmt: skip
        except BadRequestError as exc:
            if "overlap" not in str(exc):
                raise
            other = await self._stream_taking(f"{self.prefix}.x.y")
            raise SetupError(
                f"cannot create stream {self.stream} on {shown} for {self.prefix}.>: stream {other} takes those "
                f"subjects already. Publish into it (…/{other}?prefix={self.prefix}), or give {self.stream} a "
                f"prefix of its own (…/{self.stream}?prefix=P)"
            ) from None

    async def _stream_taking(self, subject: str) -> str:
        try:
            return str(await self._js.find_stream_name_by_subject(subject))
        except Exception:
            return "(another)"

    async def deliver(self, record: bytes, transition: Transition) -> Outcome:
        from nats.js.errors import NoStreamResponseError

        headers = {"Nats-Msg-Id": transition.id} if transition.id else None
        subject = subject_for(transition, self.prefix)
        try:
            await self._js.publish(subject, record, stream=self.stream, headers=headers)
        except NoStreamResponseError:
            await self._recreate_if_deleted()
            raise
        return ACCEPTED

    async def _recreate_if_deleted(self) -> None:
        from nats.js.errors import NotFoundError

        try:
            await self._js.stream_info(self.stream)
            return
        except NotFoundError:
            pass
        logger.warning("relay: stream %s was deleted while the relay ran; creating it again", self.stream)
        await self._create_stream("the server")

    async def aclose(self) -> None:
        await self._nc.close()

    def __repr__(self) -> str:
        return f"NatsSink(stream={self.stream!r}, prefix={self.prefix!r})"


def covers(pattern: str, prefix: str) -> bool:
    """Whether a stream subject ``pattern`` takes every ``<prefix>.<session>.<kind>`` subject."""
    wanted = prefix.split(".")
    tokens = pattern.split(".")
    for i, token in enumerate(tokens):
        if token == ">":
            return True
        if i < len(wanted):
            if token not in ("*", wanted[i]):
                return False
        elif token != "*":
            return False  # a literal session id or kind takes only some of the records
    return len(tokens) == len(wanted) + 2


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def _close_quietly(nc: Any) -> None:
    try:
        await nc.close()
    except Exception:  # never connected: nothing to release, and nothing worth saying
        logger.debug("nats: closing an unconnected client failed", exc_info=True)
