"""Webhook signatures: ``Sigma-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>``.

Pure functions, no I/O and no clock of their own (``now`` is passed in or read once), so a receiver can use
``verify_signature`` without the rest of the SDK running:

>>> header = sign(b'{"kind":"live"}', "whsec", timestamp=1700000000)
>>> verify_signature(b'{"kind":"live"}', header, "whsec", now=1700000060)
True
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Final

__all__ = ["SIGNATURE_HEADER", "sign", "verify_signature"]

#: The header that carries the signature.
SIGNATURE_HEADER: Final = "Sigma-Signature"
#: Bounds what a receiver is asked to parse: a header this long is not one the relay wrote.
_MAX_HEADER: Final = 4096


def sign(body: bytes, secret: str | bytes, *, timestamp: int) -> str:
    """The ``Sigma-Signature`` value for ``body`` sent at ``timestamp`` (unix seconds)."""
    return f"t={timestamp},v1={_digest(body, secret, str(timestamp))}"


def verify_signature(
    body: bytes,
    header: str | None,
    secret: str | bytes,
    tolerance: float = 300,
    *,
    now: float | None = None,
) -> bool:
    """True if ``header`` (the ``Sigma-Signature`` value) signs ``body`` with ``secret`` within ``tolerance`` s.

    ``body`` must be the raw bytes received, before any JSON parsing. The timestamp must lie within
    ``tolerance`` seconds of ``now`` (default: the current time) either way, so a captured request cannot be
    replayed later. Several ``v1=`` values are allowed (any one matching is enough), so a sender can sign with
    an old and a new secret while the secret is rotated. Anything malformed is simply False: never an exception
    that would tell a prober more.
    """
    if not header or len(header) > _MAX_HEADER or not secret:
        return False
    timestamp: str | None = None
    candidates: list[str] = []
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            return False
        if name == "t":
            timestamp = value
        elif name == "v1":
            candidates.append(value)
    if timestamp is None or not timestamp.isascii() or not timestamp.isdigit() or not candidates:
        return False
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > tolerance:
        return False
    expected = _digest(body, secret, timestamp).encode()
    # compare_digest on every candidate, without stopping at the first match: the time taken says nothing.
    # Compared as bytes: compare_digest raises TypeError on a str that is not ASCII.
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(expected, candidate.encode("utf-8", "backslashreplace"))
    return matched


def _digest(body: bytes, secret: str | bytes, timestamp: str) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
