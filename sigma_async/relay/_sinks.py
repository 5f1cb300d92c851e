"""Sinks: JSON lines to a file or standard output, a signed webhook, and an in-memory list for tests.

The NATS JetStream sink lives in ``_nats.py`` (it needs the ``nats`` extra).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import IO, Final

from ..transitions import Transition
from ._base import ACCEPTED, Outcome
from ._http import HttpPoster, redact_url
from ._signing import SIGNATURE_HEADER, sign

__all__ = ["DeliveryError", "FileSink", "MemorySink", "WebhookSink"]

#: 4xx answers that mean "later", not "never".
_RETRYABLE_4XX: Final = frozenset({408, 429})


class DeliveryError(Exception):
    """A delivery that may work later; ``retry_after`` (seconds) is the destination's own hint, if it gave one."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class FileSink:
    """Appends each record as one JSON line and flushes it, so a reader (``tail -f``) sees it at once.

    ``FileSink("-")`` writes to standard output. Writes are not fsynced: a crash of the machine (not of the
    relay) can lose the last lines, which the cursor store then replays since their cursors were saved later.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._own = self.path != "-"
        self._file: IO[bytes] = open(self.path, "ab") if self._own else sys.stdout.buffer  # noqa: SIM115

    async def deliver(self, record: bytes, transition: Transition) -> Outcome:
        # One write call per line: records of different sessions never interleave within a line.
        self._file.write(record + b"\n")
        self._file.flush()
        return ACCEPTED

    async def aclose(self) -> None:
        if self._own:
            self._file.close()
        else:
            self._file.flush()

    def __repr__(self) -> str:
        return f"FileSink({self.path!r})"


class MemorySink:
    """Keeps every accepted record in ``records``; for tests, and as the smallest example of a sink."""

    def __init__(self) -> None:
        self.records: list[bytes] = []
        self.closed = False

    async def deliver(self, record: bytes, transition: Transition) -> Outcome:
        self.records.append(record)
        return ACCEPTED

    async def aclose(self) -> None:
        self.closed = True


class WebhookSink:
    """POSTs each record to ``url``, signed when a secret is given.

    Headers: ``Content-Type: application/json``, ``Sigma-Delivery-Id: <transition id>`` and, with a secret,
    ``Sigma-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>``. A 2xx answer accepts
    the record; a 4xx other than 408 and 429 rejects it for good; anything else (other statuses, redirects,
    connection errors, timeouts) raises ``DeliveryError``, so the runner retries it. ``now`` (unix seconds) is
    the clock the signature's timestamp is read from.
    """

    def __init__(
        self,
        url: str,
        *,
        secret: str | None = None,
        timeout: float = 10.0,
        max_connections: int = 100,
        now: Callable[[], float] = time.time,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"a webhook URL starts with http:// or https://, not {redact_url(url)!r}")
        self.url = url
        self._secret = secret or None
        self._now = now
        self._poster = HttpPoster(timeout=timeout, max_connections=max_connections)

    async def deliver(self, record: bytes, transition: Transition) -> Outcome:
        headers = {"Content-Type": "application/json", "Sigma-Delivery-Id": transition.id}
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = sign(record, self._secret, timestamp=int(self._now()))
        answer = await self._poster.post(self.url, record, headers)
        status = answer.status
        if 200 <= status < 300:
            return ACCEPTED
        where = redact_url(self.url)
        if 400 <= status < 500 and status not in _RETRYABLE_4XX:
            return Outcome.rejected(f"{where} answered {status}: {answer.snippet[:100]!r}")
        raise DeliveryError(f"{where} answered {status}", retry_after=answer.retry_after)

    async def aclose(self) -> None:
        await self._poster.aclose()

    def __repr__(self) -> str:
        # The URL without its query or user info, and never the secret.
        return f"WebhookSink({redact_url(self.url)!r}, signed={self._secret is not None})"
