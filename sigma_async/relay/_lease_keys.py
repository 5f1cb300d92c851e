"""What the lease bucket holds besides cursors: lease and heartbeat values, and the key of each.

``lease.<kind>.<id>`` holds a ``Lease`` (holder, token, ttl; ``done`` once the session is done for good) and
``replicas.<name>`` a ``Heartbeat``. Ids are escaped into one key token each (``encode``).
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
from datetime import datetime
from typing import Any

import msgspec

__all__ = [
    "LEASE_PREFIX",
    "REPLICA_PREFIX",
    "Heartbeat",
    "Lease",
    "decode_lease",
    "default_replica_name",
    "encode",
    "holder_of",
    "is_done",
    "lease_key",
    "live_replicas",
    "seconds",
]

LEASE_PREFIX = "lease."
REPLICA_PREFIX = "replicas."


class Lease(msgspec.Struct, frozen=True, omit_defaults=True):
    """A lease's value: who holds it, the holder's per-process token, its TTL; ``done``: never to be taken."""

    holder: str
    token: str
    ttl: float
    done: bool = False


class Heartbeat(msgspec.Struct, frozen=True):
    """A replica's heartbeat: its name and token, its TTL and how many leases it holds."""

    replica: str
    token: str
    ttl: float
    held: int


def default_replica_name() -> str:
    """``<hostname>-<pid>``: unique per process on one host, readable in logs."""
    return f"{socket.gethostname()}-{os.getpid()}"


def lease_key(watch_key: str) -> str:
    """``session:<id>`` -> ``lease.session.<id, escaped>``."""
    kind, _, ident = watch_key.partition(":")
    return f"{LEASE_PREFIX}{kind}.{encode(ident)}"


def encode(text: str) -> str:
    """One KV key token: letters, digits, ``-`` and ``_`` as they are, anything else as ``=XX`` per UTF-8 byte."""
    return re.sub(r"[^A-Za-z0-9_-]", lambda m: "".join(f"={b:02X}" for b in m.group().encode()), text)


def decode_lease(entry: Any) -> Lease | None:
    if entry is None or not entry.value or getattr(entry, "operation", None) in ("DEL", "PURGE"):
        return None
    try:
        return msgspec.json.decode(entry.value, type=Lease)
    except msgspec.DecodeError:
        return None


def is_done(entry: Any) -> bool:
    lease = decode_lease(entry)
    return lease is not None and lease.done


def holder_of(entry: Any) -> str:
    lease = decode_lease(entry)
    return lease.holder if lease is not None else "?"


def seconds(stamp: datetime) -> float:
    return stamp.timestamp()


def live_replicas(replicas: dict[str, Any], server_now: float | None, ttl: float) -> set[str]:
    live: set[str] = set()
    for entry in replicas.values():
        if entry.operation in ("DEL", "PURGE") or not entry.value or entry.created is None:
            continue
        if server_now is not None and server_now - seconds(entry.created) > ttl:
            continue
        with contextlib.suppress(msgspec.DecodeError):
            live.add(msgspec.json.decode(entry.value, type=Heartbeat).replica)
    return live
