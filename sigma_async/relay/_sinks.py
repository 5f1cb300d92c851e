"""Sinks: JSON lines to a file or standard output, a signed webhook, and an in-memory list for tests.

The NATS JetStream sink lives in ``_nats.py`` (it needs the ``nats`` extra).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Final

from ..transitions import Transition
from ._base import ACCEPTED, Outcome
from ._http import HttpPoster, redact_url
from ._signing import SIGNATURE_HEADER, sign

__all__ = ["REJECTING", "DeliveryError", "FileSink", "MemorySink", "StderrSink", "WebhookSink"]

logger = logging.getLogger("sigma_async")

#: The answers that reject a record for good: the receiver read it and will never take it. Every other answer
#: (401, 403 and 404 included: a wrong secret, a clock ahead, a wrong path) is a misconfiguration an operator
#: fixes, so the record waits for it, retried.
REJECTING: Final = frozenset({400, 409, 410, 413, 422})


class DeliveryError(Exception):
    """A delivery that may work later; ``retry_after`` (seconds) is the destination's own hint, if it gave one.

    ``reason`` names the failure for logs and metrics: the HTTP status (``"401"``, ``"503"``) or what went wrong.
    """

    def __init__(self, message: str, *, retry_after: float | None = None, reason: str = "error") -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.reason = reason


class FileSink:
    """Appends each record as one JSON line and flushes it, so a reader (``tail -f``) sees it at once.

    ``FileSink("-")`` writes to standard output. A missing folder is created, as the file store does. Writes are
    not fsynced: a crash of the machine (not of the relay) can lose the last lines, which the cursor store then
    replays since their cursors were saved later.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._own = self.path != "-"
        if self._own:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
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


class StderrSink(FileSink):
    """One JSON line per record on standard error: where rejected records go when nothing else is configured."""

    def __init__(self) -> None:
        self.path = "stderr"
        self._own = False
        self._file = sys.stderr.buffer

    def __repr__(self) -> str:
        return "StderrSink()"


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
    the record; 400, 409, 410, 413 and 422 reject it for good (the outcome carries the status and the first 200
    bytes of the answer, for the dead-letter); anything else (401, 403, 404, 408, 429, 5xx, redirects, connection
    errors, timeouts) raises ``DeliveryError``, so the runner retries it. Without a secret, records go unsigned,
    with one WARNING when the sink is made. ``now`` (unix seconds) is the clock the signature's timestamp is read
    from.
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
        if self._secret is None:
            logger.warning(
                "relay: the webhook %s gets unsigned records: nothing lets the receiver tell them from forgeries "
                "(set SIGMA_WEBHOOK_SECRET, or --webhook-secret)", redact_url(url),
            )  # fmt: skip

    async def deliver(self, record: bytes, transition: Transition) -> Outcome:
        headers = {"Content-Type": "application/json", "Sigma-Delivery-Id": transition.id}
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = sign(record, self._secret, timestamp=int(self._now()))
        answer = await self._poster.post(self.url, record, headers)
        status = answer.status
        if 200 <= status < 300:
            return ACCEPTED
        where = redact_url(self.url)
        if status in REJECTING:
            return Outcome.rejected(
                f"{where} answered {status}: {answer.snippet[:100]!r}", status=status, answer=answer.snippet
            )
        raise DeliveryError(
            f"{where} answered {status}{_HINTS.get(status, '')}", retry_after=answer.retry_after, reason=str(status)
        )

    async def aclose(self) -> None:
        await self._poster.aclose()

    def __repr__(self) -> str:
        # The URL without its query or user info, and never the secret.
        return f"WebhookSink({redact_url(self.url)!r}, signed={self._secret is not None})"


# What an operator is likely to need to fix, by the receiver's answer.
_HINTS: Final = {
    401: " (a wrong webhook secret, or this machine's clock off by more than the receiver's tolerance?)",
    403: " (the receiver refuses this sender: its allow-list, or a wrong secret?)",
    404: " (a wrong webhook URL or path?)",
}
