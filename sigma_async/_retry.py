"""What is retried and how long to wait: ``RetryPolicy``, the shared ``Retry-After`` pause, and the retry loop."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from ._protocol import Operation, Request, Response
from .errors import (
    APIConnectionError,
    APIStatusError,
    ConflictError,
    NotFoundError,
    RateLimitError,
    SigmaError,
)

__all__ = ["PauseGate", "RetryPolicy", "RetryRunner"]

logger = logging.getLogger("sigma_async")

Sleep = Callable[[float], Awaitable[None]]
Send = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class RetryPolicy:
    """How a client retries. ``RetryPolicy(max_retries=0)`` turns retries off.

    Retried: connection errors, timeouts and HTTP 408/429/500/502/503/504, for reads, start, stop and
    delete. ``create`` is retried only where the server cannot have acted (the connection was refused,
    429, or 503 with ``Retry-After``), so a retry never makes a duplicate channel. A ``Retry-After`` longer
    than ``max_retry_after`` raises at once instead of waiting.
    """

    max_retries: int = 3
    initial_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 60.0
    retry_statuses: frozenset[int] = field(default=frozenset({408, 429, 500, 502, 503, 504}))

    def __post_init__(self) -> None:
        if self.max_retries < 0 or self.initial_delay < 0 or self.max_delay < self.initial_delay:
            raise ValueError("RetryPolicy needs max_retries >= 0 and 0 <= initial_delay <= max_delay")

    def delay_for(
        self, retry_number: int, retry_after: float | None = None, *, rng: random.Random | None = None
    ) -> float:
        """Seconds to wait before retry ``retry_number`` (1-based): the server's ``Retry-After`` when it sent
        one, else exponential backoff with "equal jitter" (half fixed, half random) so that many clients
        failing together do not retry together."""
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        base = min(self.max_delay, self.initial_delay * 2.0 ** (retry_number - 1))
        spread = rng.random() if rng is not None else random.random()
        return base / 2 + spread * base / 2

    def is_retryable(self, exc: SigmaError, operation: str) -> bool:
        """Whether a failure of ``operation`` may be retried under this policy (attempts aside)."""
        if isinstance(exc, APIStatusError):
            if exc.status_code not in self.retry_statuses:
                return False
            if exc.retry_after is not None and exc.retry_after > self.max_retry_after:
                return False
            if operation == Operation.CREATE:
                # 429 means "not processed"; a 503 that names a time to come back was turned away at the door.
                return isinstance(exc, RateLimitError) or (exc.status_code == 503 and exc.retry_after is not None)
            return True
        if isinstance(exc, APIConnectionError):
            return operation != Operation.CREATE or not exc.sent
        return False  # ResponseDecodeError: the server answered; asking again will not change its mind


def may_have_acted(exc: SigmaError) -> bool:
    """Whether the server may have carried out a request that failed this way."""
    if isinstance(exc, APIConnectionError):
        return exc.sent
    return not isinstance(exc, RateLimitError)


class PauseGate:
    """One client-wide pause: a ``Retry-After`` seen by any call holds back every call until it passes."""

    __slots__ = ("_clock", "_sleep", "until")

    def __init__(self, sleep: Sleep, clock: Callable[[], float] = time.monotonic) -> None:
        self._sleep = sleep
        self._clock = clock
        self.until = 0.0

    def pause(self, seconds: float) -> None:
        self.until = max(self.until, self._clock() + seconds)

    def remaining(self) -> float:
        return max(0.0, self.until - self._clock()) if self.until else 0.0

    async def wait(self, at_least: float = 0.0) -> None:
        """Sleep ``at_least`` seconds, and for as long as a pause lasts.

        A later answer may extend the pause while this call sleeps; the call then sleeps again, so it never
        sends during the new pause. The deadline is compared rather than the clock read again, so that an
        injected sleep that does not move the clock cannot make this loop for ever.
        """
        deadline = self.until
        delay = max(at_least, self.remaining())
        while delay > 0:
            await self._sleep(delay)
            if self.until <= deadline:
                break
            deadline = self.until
            delay = self.remaining()
        if self.until and self.remaining() == 0:
            self.until = 0.0  # passed: later calls skip the gate on the hot path


class RetryRunner:
    """Retries a request under a ``RetryPolicy`` once its first attempt has failed.

    The caller makes the first attempt itself (``SigmaClient.send``): tenacity's machinery costs about a fifth
    of a request's client CPU, so it is entered only after a retryable failure. ``CancelledError`` is never
    caught. ``retries`` counts the retry attempts sent, for ``SigmaClient.stats``.
    """

    def __init__(self, policy: RetryPolicy, gate: PauseGate, sleep: Sleep) -> None:
        self.policy = policy
        self.gate = gate
        self._sleep = sleep
        self.retries = 0

    async def recover(self, send: Send, request: Request, first: SigmaError) -> Response:
        """After the first attempt failed with ``first``: retry under the policy, or raise ``first``."""
        self._note(first)
        if self.policy.max_retries == 0 or not self.policy.is_retryable(first, request.operation):
            raise first
        return await self._retry(send, request, first)

    def _note(self, exc: SigmaError) -> None:
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None and 0 < retry_after <= self.policy.max_retry_after:
            self.gate.pause(retry_after)

    async def _retry(self, send: Send, request: Request, first: SigmaError) -> Response:
        acted = may_have_acted(first)
        policy = self.policy
        attempts = 1

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            # tenacity counts its own attempts; the first retry was made before the loop.
            return policy.delay_for(state.attempt_number + 1, getattr(exc, "retry_after", None))

        def announce(state: RetryCallState) -> None:
            # before_sleep runs only once tenacity has decided to retry: no "retry 4 of 3" on the last failure.
            exc = state.outcome.exception() if state.outcome else None
            delay = state.next_action.sleep if state.next_action else 0.0
            self._announce(request, exc, state.attempt_number + 1, delay)

        first_delay = policy.delay_for(1, getattr(first, "retry_after", None))
        self._announce(request, first, 1, first_delay)
        # Every retry sleep goes through the gate: a pause set (or extended) by another call holds it back too.
        await self.gate.wait(first_delay)
        retrying = AsyncRetrying(
            stop=stop_after_attempt(policy.max_retries),
            wait=wait,
            retry=retry_if_exception(
                lambda e: isinstance(e, SigmaError) and policy.is_retryable(e, request.operation)
            ),
            sleep=self.gate.wait,
            before_sleep=announce,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    attempts += 1
                    self.retries += 1
                    try:
                        return await send(request)
                    except (NotFoundError, ConflictError) as exc:
                        if acted and _already_done(request.operation, exc):
                            logger.info(
                                "%s %s: HTTP %s on retry after an ambiguous failure; treating as done",
                                request.method, request.path, exc.status_code,
                            )
                            return Response(status=200, body=b"", request_id=exc.request_id)
                        raise
                    except SigmaError as exc:
                        self._note(exc)
                        acted = acted or may_have_acted(exc)
                        raise
        except SigmaError as exc:
            logger.info(
                "giving up on %s %s after %d attempts: %s", request.method, request.path, attempts, _describe(exc)
            )
            raise
        raise AssertionError("unreachable: tenacity either returns or re-raises")  # pragma: no cover

    def _announce(self, request: Request, exc: BaseException | None, retry_number: int, delay: float) -> None:
        # The wait shown includes a client-wide pause that holds this retry back longer than its own backoff.
        delay = max(delay, self.gate.remaining())
        logger.info(
            "retrying %s %s after %s (retry %d of %d in %.2fs)",
            request.method, request.path, _describe(exc), retry_number, self.policy.max_retries, delay,
        )


def _already_done(operation: str, exc: APIStatusError) -> bool:
    # The first attempt may have deleted/started/stopped before its answer was lost: the retry then sees
    # "not found" (delete) or "conflict" (start/stop), which means the work is done.
    if isinstance(exc, NotFoundError):
        return operation == Operation.DELETE
    return operation in (Operation.START, Operation.STOP)


def _describe(exc: BaseException | None) -> str:
    if isinstance(exc, APIStatusError):
        return f"HTTP {exc.status_code}"
    return type(exc).__name__ if exc else "failure"
