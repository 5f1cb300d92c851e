"""Leases against a real nats-server: create-if-absent, CAS renewal, fencing, release, expiry, balance, restart."""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from typing import Any

import anyio
import msgspec
import pytest
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from sigma_async.relay._leases import ReplicaLeases, SystemClock, open_bucket
from sigma_async.testing._nats import NatsServer

TTL = 1.2
KEYS = [f"session:s{i:02d}" for i in range(12)]


class PausableClock(SystemClock):
    """Real time, but ``pause()`` stops the lease loop's sleeps from returning, as SIGSTOP would."""

    def __init__(self) -> None:
        self._running = anyio.Event()
        self._running.set()

    def pause(self) -> None:
        self._running = anyio.Event()

    def resume(self) -> None:
        self._running.set()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)
        await self._running.wait()


class Ledger:
    """Who watches what, across replicas: fails the test the moment two replicas watch one key."""

    def __init__(self) -> None:
        self.owner: dict[str, str] = {}
        self.overlaps: list[str] = []

    def claims(self, replica: str) -> Claims:
        return Claims(self, replica)

    def of(self, replica: str) -> set[str]:
        return {k for k, r in self.owner.items() if r == replica}


class Claims:
    def __init__(self, ledger: Ledger, replica: str) -> None:
        self.ledger, self.replica = ledger, replica
        self.acquired: list[str] = []
        self.released: list[str] = []

    async def acquire(self, key: str) -> None:
        current = self.ledger.owner.get(key)
        if current not in (None, self.replica):
            self.ledger.overlaps.append(f"{key} acquired by {self.replica} while {current} watches it")
        self.ledger.owner[key] = self.replica
        self.acquired.append(key)

    async def release(self, key: str, *, settle: float = 0.0) -> None:
        if self.ledger.owner.get(key) == self.replica:
            del self.ledger.owner[key]
        self.released.append(key)


async def wait_until(condition: Callable[[], object], *, timeout: float = 10.0, what: str = "") -> float:
    """Poll ``condition`` (plain or async) until true; returns the seconds it took; fails after ``timeout``."""
    start = time.monotonic()
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            pytest.fail(f"not within {timeout}s: {what}")
        await anyio.sleep(0.02)


@pytest.fixture
async def server() -> AsyncIterator[NatsServer]:
    async with NatsServer() as s:
        yield s


class Replicas:
    """In-process replicas, each with its own NATS connection and a task running its lease loop.

    A context manager rather than a fixture: the task group must be entered and left in the test's own task.
    """

    def __init__(self, server: NatsServer, *, zombies: bool = False) -> None:
        self.server, self.zombies = server, zombies
        self.ledger = Ledger()
        self.scopes: dict[str, anyio.CancelScope] = {}
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> Replicas:
        await self._stack.__aenter__()
        self._tg = await self._stack.enter_async_context(anyio.create_task_group())
        self._stack.callback(self._tg.cancel_scope.cancel)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.__aexit__(*exc)  # type: ignore[arg-type]
        # A paused replica (a zombie) still believes it watches its keys until it is fenced: that overlap is the
        # point of those tests; everywhere else, handing a key over must never overlap.
        assert self.zombies or not self.ledger.overlaps

    async def start(self, name: str, keys: list[str] = KEYS, **kw: Any) -> ReplicaLeases:
        kv = await self._stack.enter_async_context(open_bucket(f"{self.server.url}/relay", timeout=1.0))
        leases = ReplicaLeases(kv, replica=name, ttl=TTL, **kw)
        scope = self.scopes[name] = anyio.CancelScope()

        async def run(*, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
            with scope:
                await leases.run(keys, self.ledger.claims(name), task_status=task_status)

        await self._tg.start(run)
        return leases

    def stop(self, name: str) -> None:
        self.scopes[name].cancel()


@pytest.fixture
async def bucket(server: NatsServer) -> AsyncIterator[Any]:
    async with open_bucket(f"{server.url}/relay") as kv:
        yield kv


def holder(entry: Any) -> str:
    holder: str = msgspec.json.decode(entry.value)["holder"]
    return holder


async def test_first_replica_creates_every_lease_and_a_second_create_is_refused(
    server: NatsServer, bucket: Any
) -> None:
    async with Replicas(server) as replicas:
        a = await replicas.start("a")

        assert a.held == set(KEYS)
        assert replicas.ledger.of("a") == set(KEYS)
        entry = await bucket.get("lease.session.s00")
        assert holder(entry) == "a"
        with pytest.raises(KeyWrongLastSequenceError):  # created only if absent
            await bucket.create("lease.session.s00", b"mine")


async def test_renewal_is_a_cas_on_the_revision_held(server: NatsServer, bucket: Any) -> None:
    async with Replicas(server) as replicas:
        await replicas.start("a", keys=KEYS[:1])
        first = await bucket.get("lease.session.s00")

        async def renewed() -> bool:
            return bool((await bucket.get("lease.session.s00")).revision != first.revision)

        await wait_until(renewed, timeout=TTL, what="renewed well inside the TTL")
        later = await bucket.get("lease.session.s00")
        assert holder(later) == "a"
        with pytest.raises(KeyWrongLastSequenceError):  # the stale revision no longer writes
            await bucket.update("lease.session.s00", b"late", last=first.revision)


async def test_a_lease_taken_behind_its_holder_fences_the_cursor_save_and_stops_the_watch(
    server: NatsServer, bucket: Any
) -> None:
    async with Replicas(server) as replicas:
        a = await replicas.start("a", keys=KEYS[:3])
        entry = await bucket.get("lease.session.s01")
        await bucket.update("lease.session.s01", b'{"holder":"intruder","token":"x","ttl":1}', last=entry.revision)

        assert await a.fence("session:s01") is False
        assert await a.fence("session:s00") is True
        await wait_until(lambda: "session:s01" not in replicas.ledger.owner, timeout=TTL, what="watch of s01 stopped")
        assert a.held == {"session:s00", "session:s02"}


async def test_stopping_releases_every_lease_at_once(server: NatsServer, bucket: Any) -> None:
    async with Replicas(server) as replicas:
        await replicas.start("a")
        b = await replicas.start("b")
        await wait_until(lambda: len(b.held) == 6, what="b holds its share")

        replicas.stop("a")
        took = await wait_until(lambda: len(b.held) == 12, what="b holds everything after a stopped")

        assert took < TTL  # released, not expired: nobody waited for the TTL
        assert not replicas.ledger.of("a")
        with pytest.raises(KeyNotFoundError):
            await bucket.get("replicas.a")


async def test_a_replica_that_stops_renewing_is_replaced_after_the_ttl_and_fenced(server: NatsServer) -> None:
    async with Replicas(server, zombies=True) as replicas:
        clock = PausableClock()
        a = await replicas.start("a", keys=KEYS[:6], clock=clock)
        b = await replicas.start("b", keys=KEYS[:6])
        await wait_until(lambda: len(a.held) == len(b.held) == 3, what="3 and 3")
        zombie = sorted(a.held)

        clock.pause()
        paused = time.monotonic()
        await wait_until(lambda: len(b.held) == 6, timeout=3 * TTL, what="b takes a's expired leases")
        took = time.monotonic() - paused

        assert TTL * 0.7 < took < TTL + 3 * b.tick + 0.5  # after the TTL, not before; within TTL + a tick or two
        # The zombie still believes it holds its keys; the revision check before a cursor save says otherwise.
        assert all([await a.fence(key) is False for key in zombie])
        clock.resume()
        await wait_until(lambda: len(a.held) == len(b.held) == 3, what="a rejoins and gets its share back")


async def test_balance_follows_replicas_joining_and_leaving(
    server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with Replicas(server) as replicas:
        caplog.set_level(logging.INFO, logger="sigma_async.relay")
        a = await replicas.start("a")
        assert len(a.held) == 12

        b = await replicas.start("b")
        await wait_until(lambda: len(a.held) == len(b.held) == 6, what="6 and 6")

        c = await replicas.start("c")
        await wait_until(lambda: len(a.held) == len(b.held) == len(c.held) == 4, what="4, 4 and 4")
        assert replicas.ledger.owner.keys() == set(KEYS)

        replicas.stop("c")
        await wait_until(lambda: len(a.held) == len(b.held) == 6, what="6 and 6 again")
        assert any("lease released" in r.message and "reason=rebalance" in r.message for r in caplog.records)
        assert any("lease acquired key=session:" in r.message and "replica=c" in r.message for r in caplog.records)


async def test_leases_outlive_a_nats_server_restart(
    server: NatsServer, bucket: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async with Replicas(server) as replicas:
        a = await replicas.start("a", keys=KEYS[:4])
        before = {key: (await bucket.get("lease." + key.replace(":", "."))).revision for key in a.held}

        await server.stop()
        # While the store is away the loop says so and keeps trying: never a silent stop.
        await wait_until(lambda: "lease tick failed" in caplog.text, timeout=5, what="a warning about the outage")
        await server.start()

        async def renewed_after_restart() -> bool:
            try:
                entries = [await bucket.get("lease." + key.replace(":", ".")) for key in before]
            except Exception:
                return False
            return all(e.revision > before[e.key.removeprefix("lease.").replace(".", ":")] for e in entries) and all(
                holder(e) == "a" for e in entries
            )

        await wait_until(renewed_after_restart, timeout=15, what="leases renewed after the restart")
        await wait_until(lambda: a.held == set(before) and a.healthy(), what="a holds its keys and is healthy")
        assert replicas.ledger.of("a") == set(before)
