"""Bounded-concurrency runs of many calls: results in input order, each item's failure in its own slot."""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar, Union

import anyio

from .errors import SigmaError, sole_exception

__all__ = ["BulkResult", "ProgressCallback", "ResultCallback", "run_bounded"]

T = TypeVar("T")
BulkResult = Union[T, SigmaError]  # noqa: UP007 - a generic alias; ``T | SigmaError`` cannot be subscripted
ProgressCallback = Callable[[int, int], object]
ResultCallback = Callable[[int, object], object]


async def run_bounded(
    factories: Sequence[Callable[[], Awaitable[T]]],
    *,
    concurrency: int = 16,
    on_progress: ProgressCallback | None = None,
    on_result: ResultCallback | None = None,
    rate_limit: float | None = None,
) -> list[BulkResult[T]]:
    """Await every factory's call with at most ``concurrency`` in flight; return results in input order.

    A ``SigmaError`` becomes that item's result; any other exception (a bug, or cancellation) cancels the
    rest and propagates, so nothing is reported as done that was not. ``on_progress(done, total)`` runs after
    each item; ``on_result(index, result)`` as each item settles, which lets a caller that may be cancelled
    record what did finish. ``rate_limit`` caps starts per second across the run.
    """
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"concurrency must be an integer >= 1, got {concurrency!r}")
    if rate_limit is not None and not (rate_limit > 0 and math.isfinite(rate_limit)):
        raise ValueError(f"rate_limit must be a positive number of calls per second, got {rate_limit!r}")
    total = len(factories)
    results: list[BulkResult[T] | None] = [None] * total
    pending = iter(range(total))
    done = 0
    spacing = 1.0 / rate_limit if rate_limit else 0.0
    next_start = time.monotonic()

    async def worker() -> None:
        nonlocal done, next_start
        # Workers pull from one shared iterator: ``concurrency`` tasks, however many items.
        for index in pending:
            if spacing:
                now = time.monotonic()
                slot, next_start = max(now, next_start), max(now, next_start) + spacing
                if slot > now:
                    await anyio.sleep(slot - now)
            result: BulkResult[T]
            try:
                result = await factories[index]()
            except SigmaError as exc:
                result = exc
            results[index] = result
            done += 1
            if on_result is not None:
                on_result(index, result)
            if on_progress is not None:
                on_progress(done, total)

    try:
        async with anyio.create_task_group() as tg:
            for _ in range(min(concurrency, total)):
                tg.start_soon(worker)
    except Exception as exc:
        # anyio wraps even a lone failure in an exception group; the caller should see the error itself.
        inner = sole_exception(exc)
        if inner is exc:
            raise
        raise inner from None
    return results  # type: ignore[return-value]  # every slot was filled: the task group completed

