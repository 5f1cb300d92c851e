"""What the watch tests share: a stream consumed in a task, and the quick settings they poll with."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import anyio
import pytest

from sigma_async import RetryPolicy, Transition

FAST = 0.02
QUICK_RETRY = RetryPolicy(max_retries=2, initial_delay=0.001, max_delay=0.005)


class Watching:
    """A stream of transitions consumed in a task, and what came, in order."""

    def __init__(self, stream: AsyncIterator[Transition]) -> None:
        self.got: list[Transition] = []
        self.task = asyncio.create_task(self._consume(stream))

    async def _consume(self, stream: AsyncIterator[Transition]) -> None:
        async for t in stream:
            self.got.append(t)

    def kinds(self, session_id: str | None = None) -> list[str]:
        return [t.kind for t in self.got if session_id is None or t.session_id == session_id]

    def event_ids(self) -> list[str]:
        return [t.event.id for t in self.got if t.event is not None]

    def ended(self, session_id: str) -> bool:
        return "ended" in self.kinds(session_id)

    async def finish(self, timeout: float = 10) -> list[str]:
        """Wait for the stream to end by itself; its kinds."""
        with anyio.fail_after(timeout):
            await self.task
        return self.kinds()

    async def stop(self) -> None:
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task
