"""What the client tells watchers about failures they cannot see: the last failure of the current poll."""

from __future__ import annotations

from contextvars import ContextVar

from .errors import SigmaError

__all__ = ["FailureBox", "note_failure", "watching_failures"]


class FailureBox:
    """The last failure of the requests made while this box is current (a poll's retries, say)."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last: SigmaError | None = None


#: Set by a watcher around one poll, so that a poll cut short by ``max_silence`` can still say what went wrong
#: while the client was retrying inside it.
watching_failures: ContextVar[FailureBox | None] = ContextVar("sigma_async_failures", default=None)


def note_failure(exc: SigmaError) -> None:
    box = watching_failures.get()
    if box is not None:
        box.last = exc
