"""Replicas divide one watch list through leases in a NATS JetStream KV bucket, by compare-and-set on revisions.

>>> async with open_bucket("nats://127.0.0.1:4222/sigma") as kv:
...     leases = ReplicaLeases(kv, replica="relay-a", ttl=15.0)   # an ``Ownership`` for the relay runner

The bucket holds one lease per watch key (``lease.session.<id>``, ``lease.channel.<id>``) and one heartbeat per
replica (``replicas.<name>``). Every tick (``ttl / 6``) a replica writes its heartbeat, reads the bucket, renews
what it holds (by CAS on the revision it last wrote, every ``ttl / 3``), and balances: with R live replicas and N
keys its share is ceil(N / R); over it, it releases extras (watch stopped first, then the lease deleted with
``last=revision``); under it, it takes free leases (``create``: only if absent) and expired ones (``update`` with
``last=`` the stale revision), in a per-replica rendezvous order so that joiners rarely race for the same key.

Expiry and liveness are judged on the server's clock: JetStream stamps every revision, and a replica compares a
lease's stamp with the stamp on its own heartbeat, written a moment before. One clock, so no skew between machines
and no wait of a TTL after a restart to learn what is stale; and no reliance on per-message TTLs (servers 2.11+)
or a bucket ``max_age``, which would also expire the cursors kept in the same bucket.

Fencing: ``fence(key)`` renews the lease by CAS right before the runner saves a cursor; a failed CAS means another
replica took it, so the save is skipped and the watch stopped. A write whose answer was lost is resolved by
reading the lease back: each replica writes a random token, and a lease carrying ours is ours.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import re
import secrets
import socket
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

import anyio
import msgspec
from anyio.abc import TaskStatus

from ._base import Claims
from ._kv import each as _each
from ._kv import open_bucket
from ._kv import snapshot as _snapshot
from ._kv import wrong_last as _wrong_last

__all__ = ["LeaseClock", "ReplicaLeases", "SystemClock", "default_replica_name", "open_bucket"]

logger = logging.getLogger("sigma_async.relay")

LEASE_PREFIX = "lease."
REPLICA_PREFIX = "replicas."


class LeaseClock(Protocol):
    """The local clock the lease loop paces itself by; tests substitute one that can be paused."""

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """``time.monotonic`` and ``anyio.sleep``."""

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


class _Lease(msgspec.Struct, frozen=True):
    holder: str
    token: str
    ttl: float


class _Heartbeat(msgspec.Struct, frozen=True):
    replica: str
    token: str
    ttl: float
    held: int


class ReplicaLeases:
    """An ``Ownership`` that shares the watch keys among the replicas using one KV bucket (see the module doc)."""

    stays_open = True

    def __init__(
        self, kv: Any, *, replica: str | None = None, ttl: float = 15.0, clock: LeaseClock | None = None
    ) -> None:
        if not ttl > 0:
            raise ValueError(f"lease ttl must be > 0 seconds, got {ttl!r}")
        self._kv = kv
        self.replica = replica or default_replica_name()
        self.ttl = float(ttl)
        self.tick = self.ttl / 6
        self._clock = clock or SystemClock()
        # A fresh token per process: a restarted replica with the same name does not mistake old leases for its own.
        self._token = secrets.token_hex(8)
        self._lease_value = msgspec.json.encode(_Lease(self.replica, self._token, self.ttl))
        self._held: dict[str, int] = {}  # watch key -> revision we last wrote
        self._written: dict[str, float] = {}  # watch key -> local time of that write
        self._locks: dict[str, anyio.Lock] = {}
        self._fenced: set[str] = set()  # lost in fence(): the watch is stopped on the next tick
        self._wake = anyio.Event()
        self.last_tick_ok: float | None = None

    @property
    def held(self) -> frozenset[str]:
        """The watch keys this replica holds a lease on now."""
        return frozenset(self._held)

    def healthy(self) -> bool:
        """True while the loop has completed a tick (heartbeat, renewals) within the last TTL."""
        return self.last_tick_ok is not None and self._clock.monotonic() - self.last_tick_ok < self.ttl

    async def run(
        self, keys: Sequence[str], claims: Claims, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Hold a fair share of ``keys`` until cancelled, then release every lease at once for the others."""
        wanted = list(dict.fromkeys(keys))
        try:
            await self._tick(wanted, claims)
            task_status.started()
            while True:
                await self._pause()
                try:
                    await self._tick(wanted, claims)
                except Exception as exc:  # the store is down or slow: say so and try again next tick
                    logger.warning("lease tick failed replica=%s error=%r (retrying)", self.replica, exc)
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(max(5.0, self.ttl)):
                await self._release_all(claims)

    async def fence(self, key: str) -> bool:
        """Renew ``key``'s lease by CAS now: True if it is still ours (the cursor may be saved)."""
        if key not in self._held:
            return False
        async with self._lock(key):
            if key not in self._held:
                return False
            if await self._renew_locked(key):
                return True
        # The watch must stop now, not a tick later: its queued records were dropped and would be missing.
        self._fenced.add(key)
        self._wake.set()
        return False

    # -- one tick -------------------------------------------------------------------------------------------

    async def _tick(self, keys: list[str], claims: Claims) -> None:
        # Before anything is awaited: a lease not renewed for a TTL by our own clock (the process was stopped, or
        # starved) may be someone else's now. Its watch stops at once, before it can deliver what it polls next;
        # the renewal below decides whether it resumes (from its saved cursor) or is lost.
        now = self._clock.monotonic()
        suspended = [key for key in self._held if now - self._written.get(key, now) > self.ttl]
        for key in suspended:
            await claims.release(key)
        for key in list(self._fenced):
            self._fenced.discard(key)
            await claims.release(key)
        wrote = await self._heartbeat()
        leases = await _snapshot(self._kv, LEASE_PREFIX, self.tick * 3)
        replicas = await _snapshot(self._kv, REPLICA_PREFIX, self.tick * 3)
        own = replicas.get(REPLICA_PREFIX + _encode(self.replica))
        # The server's clock now: the stamp on the heartbeat we just wrote, plus the time since we wrote it.
        server_now = _seconds(own.created) + (self._clock.monotonic() - wrote) if own and own.created else None
        await self._reconcile(keys, leases, claims)
        await self._renew_due()
        for key in suspended:
            if key in self._held:
                logger.warning(
                    "lease renewed late key=%s replica=%s (watch resumed from its cursor)", key, self.replica
                )
                await claims.acquire(key)
        live = _live_replicas(replicas, server_now, self.ttl) | {self.replica}
        share = math.ceil(len(keys) / len(live)) if keys else 0
        if len(self._held) > share:
            await self._release_extras(len(self._held) - share, claims)
        elif len(self._held) < share:
            await self._take_free(keys, leases, server_now, share - len(self._held), claims)
        self.last_tick_ok = self._clock.monotonic()

    async def _heartbeat(self) -> float:
        beat = _Heartbeat(self.replica, self._token, self.ttl, len(self._held))
        await self._kv.put(REPLICA_PREFIX + _encode(self.replica), msgspec.json.encode(beat))
        return self._clock.monotonic()

    async def _reconcile(self, keys: list[str], leases: dict[str, Any], claims: Claims) -> None:
        """Make ``held`` agree with the bucket: drop leases taken by others, adopt ours whose answer was lost."""
        for key in keys:
            entry = leases.get(_lease_key(key))
            ours = entry is not None and self._is_ours(entry)
            if key in self._held and entry is not None and not ours and entry.revision > self._held[key]:
                await self._lose(key, claims, "taken")
            elif entry is not None and ours and key not in self._held and key not in self._fenced:
                async with self._lock(key):
                    self._held[key], self._written[key] = entry.revision, self._clock.monotonic()
                logger.info("lease adopted key=%s replica=%s revision=%s", key, self.replica, entry.revision)
                await claims.acquire(key)

    async def _renew_due(self) -> None:
        now = self._clock.monotonic()
        due = [k for k in list(self._held) if now - self._written.get(k, 0.0) >= self.ttl / 3]

        async def renew(key: str) -> None:
            async with self._lock(key):
                if key in self._held and not await self._renew_locked(key):
                    self._fenced.add(key)

        await _each(due, renew)
        if self._fenced:
            self._wake.set()

    async def _renew_locked(self, key: str) -> bool:
        """CAS on the revision we hold; on a lost CAS, read the lease back: a revision carrying our token is ours."""
        try:
            self._held[key] = await self._kv.update(_lease_key(key), self._lease_value, last=self._held[key])
            self._written[key] = self._clock.monotonic()
            return True
        except Exception as exc:
            if not _wrong_last(exc):
                # The answer was lost (timeout, disconnect): the write may or may not have landed. Stop the watch;
                # if the lease turns out to be ours, the next tick adopts it and the watch resumes from its cursor.
                logger.warning("lease renewal unanswered key=%s replica=%s error=%r", key, self.replica, exc)
                self._held.pop(key, None)
                return False
        with contextlib.suppress(Exception):
            entry = await self._kv.get(_lease_key(key))
            if self._is_ours(entry):
                self._held[key], self._written[key] = entry.revision, self._clock.monotonic()
                return True
        self._held.pop(key, None)
        logger.warning("lease lost key=%s replica=%s reason=fenced", key, self.replica)
        return False

    async def _take_free(
        self, keys: list[str], leases: dict[str, Any], server_now: float | None, wanted: int, claims: Claims
    ) -> None:
        candidates: list[tuple[str, Any]] = []
        for key in keys:
            if key in self._held or key in self._fenced:
                continue
            entry = leases.get(_lease_key(key))
            if entry is None or entry.operation in ("DEL", "PURGE"):
                candidates.append((key, None))
            elif server_now is not None and entry.created and server_now - _seconds(entry.created) > self.ttl:
                candidates.append((key, entry))
        candidates.sort(key=lambda c: self._preference(c[0]), reverse=True)
        taken: list[str] = []

        async def take(candidate: tuple[str, Any]) -> None:
            key, stale = candidate
            async with self._lock(key):
                try:
                    if stale is None:
                        revision = await self._kv.create(_lease_key(key), self._lease_value)
                    else:
                        revision = await self._kv.update(_lease_key(key), self._lease_value, last=stale.revision)
                except Exception as exc:  # another replica won the CAS, or the answer was lost (adopted later)
                    if not _wrong_last(exc):
                        logger.warning("lease take unanswered key=%s replica=%s error=%r", key, self.replica, exc)
                    return
                self._held[key], self._written[key] = revision, self._clock.monotonic()
            how = "free" if stale is None else f"expired holder={_holder(stale)}"
            logger.info("lease acquired key=%s replica=%s revision=%s from=%s", key, self.replica, revision, how)
            taken.append(key)

        await _each(candidates[:wanted], take)
        for key in taken:
            await claims.acquire(key)

    async def _release_extras(self, count: int, claims: Claims) -> None:
        extras = sorted(self._held, key=self._preference)[:count]
        for key in extras:
            await self._release(key, claims, "rebalance")

    async def _release(self, key: str, claims: Claims, reason: str) -> None:
        # The watch first: its last delivery's cursor save still passes the fence; only then the lease goes.
        await claims.release(key)
        async with self._lock(key):
            revision = self._held.pop(key, None)
            if revision is None:
                return
            with contextlib.suppress(Exception):  # taken meanwhile, or the store is down: the TTL frees it
                await self._kv.delete(_lease_key(key), last=revision)
        logger.info("lease released key=%s replica=%s revision=%s reason=%s", key, self.replica, revision, reason)

    async def _lose(self, key: str, claims: Claims, reason: str) -> None:
        self._held.pop(key, None)
        logger.warning("lease lost key=%s replica=%s reason=%s", key, self.replica, reason)
        await claims.release(key)

    async def _release_all(self, claims: Claims) -> None:
        for key in list(self._fenced):
            await claims.release(key)
        await _each(list(self._held), lambda key: self._release(key, claims, "shutdown"))
        with contextlib.suppress(Exception):
            await self._kv.delete(REPLICA_PREFIX + _encode(self.replica))

    # -- helpers ----------------------------------------------------------------------------------------------

    async def _pause(self) -> None:
        """Wait one tick, or less when ``fence`` found a lost lease whose watch must stop."""
        if not self._wake.is_set():
            async with anyio.create_task_group() as tg:

                async def sleep_then_wake() -> None:
                    await self._clock.sleep(self.tick)
                    self._wake.set()

                tg.start_soon(sleep_then_wake)
                await self._wake.wait()
                tg.cancel_scope.cancel()
        self._wake = anyio.Event()

    def _lock(self, key: str) -> anyio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = anyio.Lock()
        return lock

    def _is_ours(self, entry: Any) -> bool:
        if entry is None or not entry.value or getattr(entry, "operation", None) in ("DEL", "PURGE"):
            return False
        try:
            return msgspec.json.decode(entry.value, type=_Lease).token == self._token
        except msgspec.DecodeError:
            return False

    def _preference(self, key: str) -> int:
        """Rendezvous hashing: each replica ranks the keys differently, so joiners seldom race for one key."""
        digest = hashlib.blake2b(f"{self.replica}\0{key}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big")


def default_replica_name() -> str:
    """``<hostname>-<pid>``: unique per process on one host, readable in logs."""
    return f"{socket.gethostname()}-{os.getpid()}"


def _lease_key(watch_key: str) -> str:
    kind, _, ident = watch_key.partition(":")
    return f"{LEASE_PREFIX}{kind}.{_encode(ident)}"


def _encode(text: str) -> str:
    """One KV key token: letters, digits, ``-`` and ``_`` as they are, anything else as ``=XX`` per UTF-8 byte."""
    return re.sub(r"[^A-Za-z0-9_-]", lambda m: "".join(f"={b:02X}" for b in m.group().encode()), text)


def _holder(entry: Any) -> str:
    try:
        return msgspec.json.decode(entry.value, type=_Lease).holder
    except msgspec.DecodeError:
        return "?"


def _seconds(stamp: datetime) -> float:
    return stamp.timestamp()


def _live_replicas(replicas: dict[str, Any], server_now: float | None, ttl: float) -> set[str]:
    live: set[str] = set()
    for entry in replicas.values():
        if entry.operation in ("DEL", "PURGE") or not entry.value or entry.created is None:
            continue
        if server_now is not None and server_now - _seconds(entry.created) > ttl:
            continue
        with contextlib.suppress(msgspec.DecodeError):
            live.add(msgspec.json.decode(entry.value, type=_Heartbeat).replica)
    return live
