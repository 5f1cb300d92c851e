"""Bounded-concurrency runs of many calls: results in input order, each item's failure in its own slot."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar, Union

import anyio

from ._budget import TokenBucket
from .errors import AuthenticationError, OutcomeUnknownError, PermissionDeniedError, SigmaError, sole_exception

__all__ = ["BulkResult", "ProgressCallback", "ResultCallback", "run_bounded"]

T = TypeVar("T")
BulkResult = Union[T, SigmaError]  # noqa: UP007 - a generic alias; ``T | SigmaError`` cannot be subscripted
ProgressCallback = Callable[[int, int], object]
ResultCallback = Callable[[int, object], object]

#: Answers that no other item will get past: the credentials are wrong or lack the right, for every item alike.
FATAL = (AuthenticationError, PermissionDeniedError)


async def run_bounded(
    factories: Sequence[Callable[[], Awaitable[T]]],
    *,
    concurrency: int = 16,
    on_progress: ProgressCallback | None = None,
    on_result: ResultCallback | None = None,
    rate_limit: float | None = None,
) -> list[BulkResult[T]]:
    """Await every factory's call with at most ``concurrency`` in flight; return results in input order.

    A ``SigmaError`` becomes that item's result. A fatal one (401, 403: the credentials, which every item shares)
    stops the run from starting more items: each item not yet started gets that same error in its slot. Any
    other exception (a bug, or cancellation) cancels the rest and propagates. ``on_progress(done, total)`` runs
    after each item; ``on_result(index, result)`` as each item settles, which lets a caller that may be
    cancelled record what did finish: on cancellation, each item then in flight is reported with an
    ``OutcomeUnknownError`` (its request may have reached the server), so every item the server may have acted
    on is reported once. ``rate_limit`` caps starts per second across this run, under the client's own budget.
    """
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"concurrency must be an integer >= 1, got {concurrency!r}")
    if rate_limit is not None and not (rate_limit > 0 and math.isfinite(rate_limit)):
        raise ValueError(f"rate_limit must be a positive number of calls per second, got {rate_limit!r}")
    total = len(factories)
    results: list[BulkResult[T] | None] = [None] * total
    pending = iter(range(total))
    done = 0
    fatal: SigmaError | None = None
    # One token at a time: starts are evenly spaced at the cap, the first one at once.
    pacer = TokenBucket(rate_limit, burst=1) if rate_limit else None

    def settle(index: int, result: BulkResult[T]) -> None:
        nonlocal done
        results[index] = result
        done += 1
        if on_result is not None:
            on_result(index, result)
        if on_progress is not None:
            on_progress(done, total)

    async def worker() -> None:
        nonlocal fatal
        # Workers pull from one shared iterator: ``concurrency`` tasks, however many items.
        for index in pending:
            if fatal is None and pacer is not None:
                await pacer.acquire()
            if fatal is not None:
                settle(index, fatal)  # not sent: the answer would be the same
                continue
            result: BulkResult[T]
            try:
                result = await factories[index]()
            except SigmaError as exc:
                result = exc
                if isinstance(exc, FATAL) and fatal is None:
                    fatal = exc
            except BaseException:
                # Cancelled (or a sibling's bug cancelled it) mid-call: the request may have reached the server.
                if on_result is not None:
                    on_result(index, OutcomeUnknownError(f"item {index} was cut off in flight; it may have "
                                                         "taken effect on the server"))
                raise
            settle(index, result)

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
