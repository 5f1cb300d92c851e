"""Replicas divide one watch list through leases in a NATS JetStream KV bucket, by compare-and-set on revisions.

>>> async with open_bucket("nats://127.0.0.1:4222/sigma") as kv:
...     leases = ReplicaLeases(kv, replica="relay-a", ttl=15.0)   # an ``Ownership`` for the relay runner

The bucket holds one lease per watch key (``lease.session.<id>``, ``lease.channel.<id>``) and one heartbeat per
replica (``replicas.<name>``). Every tick (``ttl / 6``) a replica writes its heartbeat, reads the bucket, renews
what it holds (by CAS on the revision it last wrote, every ``ttl / 3``), and balances: with R live replicas and N
keys not done its share is ceil(N / R); over it, it releases extras (watch stopped first, then the lease deleted
with ``last=revision``); under it, it takes free leases (``create``: only if absent) and expired ones (``update``
with ``last=`` the stale revision), in a per-replica rendezvous order so that joiners rarely race for the same key.

Expiry and liveness are judged on the server's clock: JetStream stamps every revision, and a replica compares a
lease's stamp with the stamp on its own heartbeat, written a moment before. One clock, so no skew between machines
and no wait of a TTL after a restart to learn what is stale; and no reliance on per-message TTLs (servers 2.11+)
or a bucket ``max_age``, which would also expire the cursors kept in the same bucket.

Fencing, twice. Before every delivery attempt the runner asks ``holds(key)``, answered from the replica's own
clock (``_fence.LeaseBook``): a lease not renewed recently enough stops its watch unsent. Before every cursor
save, ``fence(key)`` renews the lease by CAS: a failed CAS means another replica took it. A write whose answer was
lost is resolved by reading the lease back: each replica writes a random token, and a lease carrying ours is ours.

Done: ``finish(key)`` overwrites a finished session's lease with a done-marker (CAS on the revision held), which
every replica reads on its next tick and never takes again; once every key of the list is done, ``run`` returns.
Done-markers of keys no longer in the list are erased on the first tick.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import secrets
from collections.abc import Sequence
from typing import Any

import anyio
import msgspec
from anyio.abc import TaskStatus

from ._base import Claims
from ._fence import LeaseBook, LeaseClock, SystemClock
from ._kv import check_bucket, each, erase, open_bucket, snapshot, wrong_last
from ._lease_keys import (
    LEASE_PREFIX,
    REPLICA_PREFIX,
    Heartbeat,
    Lease,
    decode_lease,
    default_replica_name,
    encode,
    holder_of,
    is_done,
    lease_key,
    live_replicas,
    seconds,
)

__all__ = ["LeaseClock", "ReplicaLeases", "SystemClock", "default_replica_name", "open_bucket"]

logger = logging.getLogger("sigma_async.relay")

class ReplicaLeases:
    """An ``Ownership`` that shares the watch keys among the replicas using one KV bucket (see the module doc)."""

    stays_open = True

    def __init__(
        self, kv: Any, *, replica: str | None = None, ttl: float = 15.0, clock: LeaseClock | None = None
    ) -> None:
        if not (ttl > 0 and math.isfinite(ttl)):
            raise ValueError(f"lease ttl must be a number of seconds > 0, got {ttl!r}")
        self._kv = kv
        self.replica = replica or default_replica_name()
        self.ttl = float(ttl)
        self.tick = self.ttl / 6
        self._clock = clock or SystemClock()
        self._book = LeaseBook(self.ttl, self._clock)
        # A fresh token per process: a restarted replica with the same name does not mistake old leases for its own.
        self._token = secrets.token_hex(8)
        self._lease_value = msgspec.json.encode(Lease(self.replica, self._token, self.ttl))
        self._done_value = msgspec.json.encode(Lease(self.replica, self._token, self.ttl, done=True))
        self._locks: dict[str, anyio.Lock] = {}
        self._fenced: set[str] = set()  # lost in fence(): the watch is stopped on the next tick
        self.done: set[str] = set()  # keys whose session is done, for every replica
        self._wake = anyio.Event()
        self._pruned = False
        self.last_tick_ok: float | None = None

    @property
    def held(self) -> frozenset[str]:
        """The watch keys this replica holds a lease on now."""
        return frozenset(self._book.revisions)

    def healthy(self) -> bool:
        """True while the loop has completed a tick (heartbeat, renewals) within the last TTL."""
        return self.last_tick_ok is not None and self._clock.monotonic() - self.last_tick_ok < self.ttl

    async def run(
        self, keys: Sequence[str], claims: Claims, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Hold a fair share of ``keys`` until cancelled or every key is done, then release every lease at once."""
        wanted = list(dict.fromkeys(keys))
        try:
            await self._tick(wanted, claims)
            task_status.started()
            while not self._all_done(wanted):
                await self._pause()
                try:
                    await self._tick(wanted, claims)
                except Exception as exc:  # the store is down or slow: say so and try again next tick
                    await check_bucket(self._kv)  # ... unless it was deleted: that is fatal
                    logger.warning("lease tick failed replica=%s error=%r (retrying)", self.replica, exc)
            logger.info("every watched session is done replica=%s", self.replica)
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(max(5.0, self.ttl)):
                await self._release_all(claims)

    def holds(self, key: str) -> bool:
        """Whether ``key`` is certainly ours now, by this process's own clock; asked before each delivery."""
        if self._book.holds(key):
            return True
        self._wake.set()  # doubted, or lost: the loop stops the watch now and resumes it if the lease is ours
        return False

    async def fence(self, key: str) -> bool:
        """Renew ``key``'s lease by CAS now: True if it is still ours (the cursor may be saved)."""
        if key not in self._book.revisions:
            return False
        async with self._lock(key):
            if key not in self._book.revisions:
                return False
            if await self._renew_locked(key):
                return True
        # The watch must stop now, not a tick later: its queued records were dropped and would be missing.
        self._fenced.add(key)
        self._wake.set()
        return False

    async def finish(self, key: str) -> None:
        """``key``'s session is done: mark its lease so, and never take it again (see the module doc)."""
        self.done.add(key)
        async with self._lock(key):
            revision = self._book.revisions.get(key)
            if revision is None:
                return
            try:
                await self._kv.update(lease_key(key), self._done_value, last=revision)
            except Exception as exc:  # lost meanwhile: the next holder reads the store's done-marker and marks it
                logger.info("lease not marked done key=%s replica=%s error=%r", key, self.replica, exc)
            self._book.drop(key)
        logger.info("lease done key=%s replica=%s", key, self.replica)
        self._wake.set()

    # -- one tick -------------------------------------------------------------------------------------------

    async def _tick(self, keys: list[str], claims: Claims) -> None:
        # Before anything is awaited: a lease whose renewal is overdue by our own clock (the process was stopped or
        # starved) may be someone else's now, and one doubted by ``holds`` had records dropped. Their watches stop
        # at once; the renewal below decides whether they resume (from the saved cursor) or are lost.
        suspended = self._book.stale() | self._fenced
        self._fenced = set()
        for key in suspended:
            await claims.release(key)
        wrote = await self._heartbeat()
        leases = await snapshot(self._kv, LEASE_PREFIX, self.tick * 3)
        replicas = await snapshot(self._kv, REPLICA_PREFIX, self.tick * 3)
        own = replicas.get(REPLICA_PREFIX + encode(self.replica))
        # The server's clock now: the stamp on the heartbeat we just wrote, plus the time since we wrote it.
        server_now = seconds(own.created) + (self._clock.monotonic() - wrote) if own and own.created else None
        await self._note_done(keys, leases)
        adopted = await self._reconcile(keys, leases, claims)
        await self._renew_due()
        for key in sorted(suspended | adopted):
            if key in self._book.revisions:
                if key in suspended:
                    logger.warning("lease renewed late key=%s replica=%s (watch resumed from its cursor)",
                                   key, self.replica)
                await claims.acquire(key)
        live_keys = [key for key in keys if key not in self.done]
        live = live_replicas(replicas, server_now, self.ttl) | {self.replica}
        share = math.ceil(len(live_keys) / len(live)) if live_keys else 0
        if len(self._book.revisions) > share:
            await self._release_extras(len(self._book.revisions) - share, claims)
        elif len(self._book.revisions) < share:
            await self._take_free(live_keys, leases, server_now, share - len(self._book.revisions), claims)
        self.last_tick_ok = self._clock.monotonic()

    async def _heartbeat(self) -> float:
        beat = Heartbeat(self.replica, self._token, self.ttl, len(self._book.revisions))
        await self._kv.put(REPLICA_PREFIX + encode(self.replica), msgspec.json.encode(beat))
        return self._clock.monotonic()

    async def _note_done(self, keys: list[str], leases: dict[str, Any]) -> None:
        """Learn the keys other replicas finished; erase the done-markers of keys no longer in the list."""
        listed = {lease_key(key): key for key in keys}
        for name, entry in leases.items():
            if not is_done(entry):
                continue
            key = listed.get(name)
            if key is not None:
                self.done.add(key)
            elif not self._pruned:
                with contextlib.suppress(Exception):  # the next replica to start tries again
                    await erase(self._kv, name)
        self._pruned = True

    async def _reconcile(self, keys: list[str], leases: dict[str, Any], claims: Claims) -> set[str]:
        """Make the book agree with the bucket: drop leases taken by others, adopt ours whose answer was lost.
        Returns the adopted keys, to be watched once renewed."""
        adopted: set[str] = set()
        for key in keys:
            entry = leases.get(lease_key(key))
            ours = entry is not None and self._is_ours(entry)
            held = self._book.revisions.get(key)
            if held is not None and entry is not None and not ours and entry.revision > held:
                await self._lose(key, claims, "taken")
            elif entry is not None and ours and held is None and key not in self._fenced and key not in self.done:
                async with self._lock(key):
                    self._book.adopt(key, entry.revision)
                logger.info("lease adopted key=%s replica=%s revision=%s", key, self.replica, entry.revision)
                adopted.add(key)
        return adopted

    async def _renew_due(self) -> None:
        async def renew(key: str) -> None:
            async with self._lock(key):
                if key in self._book.revisions and not await self._renew_locked(key):
                    self._fenced.add(key)

        await each(self._book.due(self.ttl / 3), renew)
        if self._fenced:
            self._wake.set()

    async def _renew_locked(self, key: str) -> bool:
        """CAS on the revision we hold; on a lost CAS, read the lease back: a revision carrying our token is ours."""
        sent = self._clock.monotonic()
        try:
            revision = await self._kv.update(lease_key(key), self._lease_value, last=self._book.revisions[key])
            self._book.wrote(key, revision, sent)
            return True
        except Exception as exc:
            if not wrong_last(exc):
                # The answer was lost (timeout, disconnect): the write may or may not have landed. Stop the watch;
                # if the lease turns out to be ours, the next tick adopts it and the watch resumes from its cursor.
                logger.warning("lease renewal unanswered key=%s replica=%s error=%r", key, self.replica, exc)
                self._book.drop(key)
                return False
        with contextlib.suppress(Exception):
            entry = await self._kv.get(lease_key(key))
            if self._is_ours(entry):
                self._book.wrote(key, entry.revision, sent)
                return True
        self._book.drop(key)
        logger.warning("lease lost key=%s replica=%s reason=fenced", key, self.replica)
        return False

    async def _take_free(
        self, keys: list[str], leases: dict[str, Any], server_now: float | None, wanted: int, claims: Claims
    ) -> None:
        candidates: list[tuple[str, Any]] = []
        for key in keys:
            if key in self._book.revisions or key in self._fenced:
                continue
            entry = leases.get(lease_key(key))
            if entry is None or entry.operation in ("DEL", "PURGE"):
                candidates.append((key, None))
            elif server_now is not None and entry.created and server_now - seconds(entry.created) > self.ttl:
                candidates.append((key, entry))
        candidates.sort(key=lambda c: self._preference(c[0]), reverse=True)
        taken: list[str] = []

        async def take(candidate: tuple[str, Any]) -> None:
            key, stale = candidate
            async with self._lock(key):
                sent = self._clock.monotonic()
                try:
                    if stale is None:
                        revision = await self._kv.create(lease_key(key), self._lease_value)
                    else:
                        revision = await self._kv.update(lease_key(key), self._lease_value, last=stale.revision)
                except Exception as exc:  # another replica won the CAS, or the answer was lost (adopted later)
                    if not wrong_last(exc):
                        logger.warning("lease take unanswered key=%s replica=%s error=%r", key, self.replica, exc)
                    return
                self._book.wrote(key, revision, sent)
            how = "free" if stale is None else f"expired holder={holder_of(stale)}"
            logger.info("lease acquired key=%s replica=%s revision=%s from=%s", key, self.replica, revision, how)
            taken.append(key)

        await each(candidates[:wanted], take)
        for key in taken:
            await claims.acquire(key)

    async def _release_extras(self, count: int, claims: Claims) -> None:
        extras = sorted(self._book.revisions, key=self._preference)[:count]
        # Side by side: each waits (a tick at most) for its watch's last delivery to be saved.
        await each(extras, lambda key: self._release(key, claims, "rebalance", settle=self.tick))

    async def _release(self, key: str, claims: Claims, reason: str, *, settle: float = 0.0) -> None:
        # The watch first, and its last delivery's cursor saved (its fence still passes): only then the lease goes,
        # so the next holder resumes after that record rather than sending it again.
        await claims.release(key, settle=settle)
        async with self._lock(key):
            revision = self._book.drop(key)
            if revision is None:
                return
            with contextlib.suppress(Exception):  # taken meanwhile, or the store is down: the TTL frees it
                await self._kv.delete(lease_key(key), last=revision)
        logger.info("lease released key=%s replica=%s revision=%s reason=%s", key, self.replica, revision, reason)

    async def _lose(self, key: str, claims: Claims, reason: str) -> None:
        self._book.drop(key)
        logger.warning("lease lost key=%s replica=%s reason=%s", key, self.replica, reason)
        await claims.release(key)

    async def _release_all(self, claims: Claims) -> None:
        for key in list(self._fenced):
            await claims.release(key)
        await each(list(self._book.revisions), lambda key: self._release(key, claims, "shutdown"))
        with contextlib.suppress(Exception):  # erased, not deleted: names of replicas gone leave nothing behind
            await erase(self._kv, REPLICA_PREFIX + encode(self.replica))

    # -- helpers ----------------------------------------------------------------------------------------------

    def _all_done(self, keys: list[str]) -> bool:
        return all(key in self.done for key in keys)

    async def _pause(self) -> None:
        """Wait one tick, or less when a fence or a delivery found a lease whose watch must stop."""
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
        lease = decode_lease(entry)
        return lease is not None and not lease.done and lease.token == self._token

    def _preference(self, key: str) -> int:
        """Rendezvous hashing: each replica ranks the keys differently, so joiners seldom race for one key."""
        digest = hashlib.blake2b(f"{self.replica}\0{key}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big")
