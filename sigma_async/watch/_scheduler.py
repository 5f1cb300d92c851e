"""One loop for every watch of a monitor: a heap of due times, a read started for each due item, results fed back.

Nothing here runs per session. A watched thing is data (an ``Item``); one runner task per monitor starts each
due read as a short task, sleeps once until the next due time, and each read's result is fed back (to the
pure trackers) the moment it arrives. Transitions wait in one buffer for the consumer; while it holds
``max_buffer`` of them no new read starts, so a slow consumer slows the polling instead of filling memory.
What a read of each kind of item does is the subclass's (``Engine``); this module is the loop, the output
buffer and the failure policy.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import random
from collections import deque
from collections.abc import AsyncGenerator, Callable, Coroutine
from typing import Any, Final

import anyio

from .._observe import FailureBox, watching_failures
from ..errors import SigmaError, WatchError
from ..transitions import Transition
from ._clock import RealClock, WatchClock
from ._items import Item
from ._reads import backoff_delay, describe, is_fatal

__all__ = ["GRID", "ErrorCallback", "Scheduler", "stream"]

logger = logging.getLogger("sigma_async")

ErrorCallback = Callable[[str, SigmaError], object]

#: Due times this close together start in one wake-up.
GRID: Final = 0.005


class Scheduler:
    """The loop: items due on a heap, each due read started as a task, transitions out in one buffer.

    Subclasses say what a read of an item is (``read``), what a watch that fails for good leaves behind
    (``give_up``) and when everything is done (``done``).
    """

    def __init__(
        self,
        *,
        interval: float,
        jitter: float,
        max_silence: float | None,
        on_error: ErrorCallback | None,
        stay_open: bool,
        stagger: bool,
        first_delay: float,
        max_buffer: int,
        max_in_flight: int,
        clock: WatchClock | None,
    ) -> None:
        self.clock: WatchClock = clock if clock is not None else RealClock()
        self.interval = interval
        self.jitter = jitter
        self.max_silence = max_silence
        self.on_error = on_error
        self.stay_open = stay_open
        self.stagger = stagger
        self.first_delay = first_delay
        self.max_buffer = max_buffer
        self.max_in_flight = max_in_flight
        self.finished = False
        # (due, seq) on the heap, the item in a dict by seq: a tuple of two numbers is untracked by the cyclic GC
        # once it has survived a collection, a tuple holding the item never is (one tracked object per session).
        # An entry whose seq is no longer in the dict is stale: rescheduled since.
        self._heap: list[tuple[float, int]] = []
        self._due: dict[int, Item] = {}
        self._seq = itertools.count()
        self._reads: set[asyncio.Task[None]] = set()
        self._out: deque[Transition] = deque()
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None  # the loop's, while it sleeps
        self._consumer: asyncio.Future[None] | None = None  # the consumer's, while it waits for a transition
        self._wake_at = float("inf")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: asyncio.Task[None] | None = None

    # -- what a subclass says -------------------------------------------------------------------------------

    def read(self, item: Item) -> Coroutine[Any, Any, None]:
        """The coroutine that reads ``item`` once and feeds back what it read (or ``failed``)."""
        raise NotImplementedError

    def give_up(self, item: Item, exc: SigmaError) -> bool:
        """Drop a watch that failed for good; False if its failure is the whole monitor's, not one watch's."""
        raise NotImplementedError

    def done(self) -> bool:
        """True when nothing is left to watch."""
        raise NotImplementedError

    # -- the consumer's side --------------------------------------------------------------------------------

    def start(self) -> None:
        """Start polling (the first ``next()`` does, if this was not called)."""
        if self._runner is None and not self.finished:
            self._loop = asyncio.get_running_loop()
            self._runner = self._loop.create_task(self._run(), name="sigma-async watch loop")
            self._runner.add_done_callback(self._runner_done)

    async def next(self) -> Transition:
        """The next transition, waiting for one. ``StopAsyncIteration`` once nothing is left to watch.

        Whether all is done is decided here, by the consumer: a session added while handling the last ``Ended``
        (before asking for the next transition) is watched, never raced by the loop ending.
        """
        self.start()
        while True:
            if self._out:
                transition = self._out.popleft()
                if len(self._out) == self.max_buffer - 1:
                    self._wake_loop()  # there is room again: the loop may start reads
                return transition
            if self._error is not None:
                error, self._error = self._error, None
                await self.aclose()
                raise error
            if self.finished or (not self.stay_open and self.done()):
                await self.aclose()
                raise StopAsyncIteration
            waiter = self._consumer = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._consumer = None

    async def aclose(self) -> None:
        """Stop the loop and every read, and wait until they are gone. Safe to call twice."""
        self.finished = True
        tasks = [*self._reads, *([self._runner] if self._runner is not None else [])]
        self._reads = set()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._heap.clear()
        self._due.clear()

    def abandon(self) -> None:
        """Cancel the loop and the running reads without waiting: for a monitor dropped without ``aclose``."""
        self.finished = True
        for task in [*self._reads, *([self._runner] if self._runner is not None else [])]:
            task.cancel()
        self._heap.clear()
        self._due.clear()

    def check_open(self) -> None:
        if self.finished:
            raise RuntimeError("this monitor has finished; start a new one")

    # -- the loop -------------------------------------------------------------------------------------------

    def schedule(self, item: Item, due: float) -> None:
        """Make ``item`` due at ``due`` (monotonic seconds on the clock); replaces when it was due before."""
        self._due.pop(item.seq, None)
        item.seq = seq = next(self._seq)
        self._due[seq] = item
        heapq.heappush(self._heap, (due, seq))
        if due < self._wake_at:
            self._wake_loop()

    def emit(self, transitions: list[Transition]) -> None:
        if transitions:
            self._out.extend(transitions)
            self._notify()

    def purge(self, session_id: str) -> None:
        """Removal means "no more of these": drop what is waiting to be yielded for that session, too."""
        if any(t.session_id == session_id for t in self._out):
            self._out = deque(t for t in self._out if t.session_id != session_id)

    async def _run(self) -> None:
        while True:
            self._pump()
            await self._sleep()

    def _runner_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None and self._error is None:
            self._error = task.exception()  # a bug: end the monitor with it rather than hang
        self._notify()

    def _pump(self) -> None:
        """Start every read that is due (within one grid step), as far as the caps allow."""
        heap = self._heap
        if not heap:
            return
        limit = self.now() + GRID
        while heap and heap[0][0] <= limit:
            if len(self._reads) >= self.max_in_flight or len(self._out) >= self.max_buffer:
                return
            _, seq = heapq.heappop(heap)
            item = self._due.pop(seq, None)
            if item is None or not item.alive:
                continue  # rescheduled or dropped since
            self._start(item)

    async def _sleep(self) -> None:
        loop = self._loop
        assert loop is not None
        waiter = self._waiter = loop.create_future()
        handle = None
        if self._heap and len(self._reads) < self.max_in_flight and len(self._out) < self.max_buffer:
            self._wake_at = self._heap[0][0]
            handle = self.clock.call_at(self._wake_at, self._wake_loop)
        try:
            await waiter
        finally:
            self._waiter = None
            self._wake_at = float("inf")
            if handle is not None:
                handle.cancel()

    def _wake(self) -> None:
        """Something changed: the loop looks again at what is due, and the consumer at what is there."""
        self._wake_loop()
        self._notify()

    def _wake_loop(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _notify(self) -> None:
        consumer = self._consumer
        if consumer is not None and not consumer.done():
            consumer.set_result(None)

    def _start(self, item: Item) -> None:
        loop = self._loop
        assert loop is not None
        item.busy = True
        task = loop.create_task(self.read(item))
        self._reads.add(task)
        task.add_done_callback(self._read_done)

    def _read_done(self, task: asyncio.Task[None]) -> None:
        # Wakes only whoever has something new to look at: a wake-up per read (of the loop, or of the consumer,
        # who would find nothing) costs about as much as the read's own bookkeeping.
        was_full = len(self._reads) >= self.max_in_flight
        self._reads.discard(task)
        if not task.cancelled() and task.exception() is not None and self._error is None:
            self._error = task.exception()  # a bug, not a server's failure: those are handled in the read
        if was_full:
            self._wake_loop()  # there is room again: the loop may start reads
        if self._error is not None or (not self.stay_open and self.done()):
            self._notify()  # the consumer ends, or raises

    # -- failures -------------------------------------------------------------------------------------------

    async def guarded(self, item: Item, read: Coroutine[Any, Any, Any]) -> Any:
        """Run one item's reads; with ``max_silence``, cut them off (naming what the server last answered) once the
        item has had no good answer for that long, even while the client is still retrying inside them."""
        if self.max_silence is None:
            return await read  # nothing to cut off, and no failure to name
        box = FailureBox()
        token = watching_failures.set(box)
        try:
            left = max(0.0, self.max_silence - (self.now() - item.last_ok))
            with anyio.move_on_after(left) as scope:
                return await read
            assert scope.cancelled_caught
            raise self._silence(item, box.last)
        finally:
            watching_failures.reset(token)
            read.close()

    def failed(self, item: Item, exc: SigmaError) -> None:
        """A read of ``item`` failed: poll again after a back-off, or give the watch up (fatal, ``max_silence``)."""
        if not item.alive:
            return
        if is_fatal(exc):
            self.give_up_and_report(item, exc)
            return
        item.failures += 1
        item.last_error = exc
        now = self.now()
        delay = backoff_delay(self.interval, item.failures)
        if self.max_silence is not None:
            left = self.max_silence - (now - item.last_ok)
            if left <= 0:
                self.give_up_and_report(item, self._silence(item, None))
                return
            delay = min(delay, left + 0.001)  # wake in time to give up on schedule
        logger.info("watch %s: %s; polling again in %.2fs", item.what, describe(exc), delay)
        self.schedule(item, now + delay)

    def report(self, ident: str, exc: SigmaError) -> None:
        """A watch ended with ``exc``: ``on_error`` hears of it, or else the monitor ends with it."""
        if self.on_error is None:
            self.end_with(exc)
            return
        self.on_error(ident, exc)

    def end_with(self, exc: BaseException) -> None:
        """End the monitor with ``exc`` once what is buffered has been yielded (the first such error wins)."""
        if self._error is None:
            self._error = exc
        self._wake()

    def give_up_and_report(self, item: Item, exc: SigmaError) -> None:
        if self.give_up(item, exc):
            self.report(item.ident, exc)

    def _silence(self, item: Item, in_flight: SigmaError | None) -> WatchError:
        silent = self.now() - item.last_ok
        last = in_flight or item.last_error
        why = f" (last: {describe(last)})" if last else " (no answer within the time)"
        error = WatchError(f"{item.what}: no good answer from the server for {silent:.1f}s{why}")
        error.__cause__ = last
        return error

    # -- time -----------------------------------------------------------------------------------------------

    def now(self) -> float:
        return self.clock.now()

    def first_due(self) -> float:
        # Spread the first polls over one interval so that thousands of watches do not poll in step.
        spread = random.uniform(0, self.interval) if self.stagger else 0.0
        return self.now() + self.first_delay + spread

    def jittered(self, seconds: float) -> float:
        return seconds * random.uniform(1.0 - self.jitter, 1.0 + self.jitter)


async def stream(scheduler: Scheduler) -> AsyncGenerator[Transition, None]:
    """A scheduler's transitions as an async generator; closing it stops the reads."""
    try:
        while True:
            try:
                transition = await scheduler.next()
            except StopAsyncIteration:
                return
            yield transition
    finally:
        await scheduler.aclose()
