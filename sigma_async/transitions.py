"""State transitions of a live session, as yielded by ``watch_session``, ``watch_channel`` and ``monitor``.

A tagged union: ``msgspec.json.encode(t)`` gives ``{"kind": "live", ...}``, and ``match t: case Live():``
works.

>>> async for t in client.watch_session(sid):
...     match t:
...         case Interrupted(): page_someone(t.session_id)
...         case Ended(): break
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal, Union

import msgspec

from .models import Event

__all__ = [
    "TRANSITION_TYPES",
    "AnyTransition",
    "Ended",
    "Initializing",
    "Interrupted",
    "Live",
    "Restored",
    "Stable",
    "Started",
    "Stopped",
    "Transition",
    "Unknown",
    "decode_transition",
]


class Transition(msgspec.Struct, tag_field="kind", kw_only=True, frozen=True):
    """One change of a session's state.

    ``source`` says whether it was read from the session's status or from one of its events; ``event`` is
    that event. ``at`` is the server's time for events and the observation time for status changes.
    ``previous`` is the kind yielded before this one for the same session (None for the first).
    ``cursor`` is opaque: pass it as ``since=`` to resume a watch right after this transition.
    ``id`` is stable and unique across sessions: a transition read again from the same server history (by a
    watcher resuming from an earlier cursor, or by another process) has the same ``id``, so receivers can
    drop repeats by it. Event transitions take it from the event's id; status transitions from the session
    and the state reached.
    """

    kind: ClassVar[str] = ""

    session_id: str
    channel_id: str | None = None
    source: Literal["status", "event"]
    event: Event | None = None
    at: datetime
    previous: str | None = None
    cursor: str = ""
    id: str = ""

    @property
    def is_terminal(self) -> bool:
        """True for ``Ended``: the last transition of a session."""
        return False


class Initializing(Transition, tag="initializing", frozen=True):
    kind: ClassVar[str] = "initializing"


class Started(Transition, tag="started", frozen=True):
    kind: ClassVar[str] = "started"


class Live(Transition, tag="live", frozen=True):
    kind: ClassVar[str] = "live"


class Stable(Transition, tag="stable", frozen=True):
    kind: ClassVar[str] = "stable"


class Interrupted(Transition, tag="interrupted", frozen=True):
    kind: ClassVar[str] = "interrupted"


class Restored(Transition, tag="restored", frozen=True):
    kind: ClassVar[str] = "restored"


class Stopped(Transition, tag="stopped", frozen=True):
    kind: ClassVar[str] = "stopped"


class Ended(Transition, tag="ended", frozen=True):
    kind: ClassVar[str] = "ended"

    @property
    def is_terminal(self) -> bool:
        return True


class Unknown(Transition, tag="unknown", frozen=True):
    """A status or event action the SDK cannot map; ``raw`` is the server's own value."""

    kind: ClassVar[str] = "unknown"
    raw: str


AnyTransition = Union[Initializing, Started, Live, Stable, Interrupted, Restored, Stopped, Ended, Unknown]  # noqa: UP007

#: kind -> class, for every kind but ``unknown`` (which needs ``raw``).
TRANSITION_TYPES: dict[str, type[Transition]] = {
    cls.kind: cls for cls in (Initializing, Started, Live, Stable, Interrupted, Restored, Stopped, Ended)
}

_decoder = msgspec.json.Decoder(AnyTransition)


def decode_transition(data: bytes | str) -> Transition:
    """Read back a transition written with ``msgspec.json.encode`` (e.g. a JSON line of ``watch --json``)."""
    result: Transition = _decoder.decode(data)
    return result
