"""Event loops to run on: the standard asyncio loop and uvloop when it is installed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["LOOPS", "available_loops", "best_loop", "loop_factory", "run_on"]

T = TypeVar("T")
LOOPS = ("asyncio", "uvloop")


def available_loops() -> list[str]:
    """``["asyncio"]``, plus ``"uvloop"`` when it can be imported."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return ["asyncio"]
    return ["asyncio", "uvloop"]


def best_loop() -> str:
    """The fastest loop installed: what a benchmark server runs on."""
    return available_loops()[-1]


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    if name == "asyncio":
        return asyncio.new_event_loop
    raise ValueError(f"unknown event loop {name!r}; choose from {', '.join(LOOPS)}")


def run_on(name: str, coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on the named loop (``asyncio.Runner(loop_factory=...)`` needs Python 3.11)."""
    loop = loop_factory(name)()
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(coro)
    finally:
        _finish(loop)


def _finish(loop: asyncio.AbstractEventLoop) -> None:
    # As asyncio.run does: nothing a benchmark started may outlive its loop.
    try:
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        asyncio.set_event_loop(None)
        loop.close()
