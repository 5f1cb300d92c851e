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
    "PLAYBACK_TYPES",
    "PlaybackResumed",
    "PlaybackStalled",
    "Restored",
    "Stable",
    "Started",
    "Stopped",
    "Transition",
    "Unknown",
    "decode_transition",
    "playback_transition_id",
]


class Transition(msgspec.Struct, tag_field="kind", kw_only=True, frozen=True):
    """One change of a session's state.

    ``source`` says whether it was read from the session's status, from one of its events, or from its HLS
    output (``"playback"``: ``PlaybackStalled`` and ``PlaybackResumed``); ``event`` is that event.
    ``at`` is the server's time for events and the observation time for status and playback changes.
    ``previous`` is the kind yielded before this one for the same session (None for the first).
    ``cursor`` is opaque: pass it as ``since=`` to resume a watch right after this transition.
    ``id`` is stable and unique across sessions: a transition read again from the same server history (by a
    watcher resuming from an earlier cursor, or by another process) has the same ``id``, so receivers can
    drop repeats by it. Event transitions take it from the event's id; status transitions from the session
    and the state reached; playback transitions from the session, the kind and the count
    (``<session_id>:playback_stalled:<n>``).
    """

    kind: ClassVar[str] = ""

    session_id: str
    channel_id: str | None = None
    source: Literal["status", "event", "playback"]
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


class PlaybackStalled(Transition, tag="playback_stalled", frozen=True, kw_only=True):
    """The session's HLS output stopped advancing: ``renditions`` (``["720p"]``) have not changed for the stall
    threshold, or have failed for as long; ``reason`` says how (``"stale"``, ``"http 404"``, ``"timeout"``...)."""

    kind: ClassVar[str] = "playback_stalled"
    source: Literal["playback"] = "playback"
    renditions: tuple[str, ...]
    reason: str


class PlaybackResumed(Transition, tag="playback_resumed", frozen=True, kw_only=True):
    """Every rendition of the session's HLS output advances again; ``renditions`` are those that had stalled."""

    kind: ClassVar[str] = "playback_resumed"
    source: Literal["playback"] = "playback"
    renditions: tuple[str, ...]
    reason: str = "advancing"


AnyTransition = Union[  # noqa: UP007
    Initializing, Started, Live, Stable, Interrupted, Restored, Stopped, Ended, Unknown, PlaybackStalled,
    PlaybackResumed,
]

#: kind -> class, for every kind a session status or event action can map to (``unknown`` needs ``raw``).
TRANSITION_TYPES: dict[str, type[Transition]] = {
    cls.kind: cls for cls in (Initializing, Started, Live, Stable, Interrupted, Restored, Stopped, Ended)
}
#: kind -> class of the kinds read from the HLS output (they need ``renditions``, and come from no status).
PLAYBACK_TYPES: dict[str, type[Transition]] = {cls.kind: cls for cls in (PlaybackStalled, PlaybackResumed)}

_decoder = msgspec.json.Decoder(AnyTransition)


def decode_transition(data: bytes | str) -> Transition:
    """Read back a transition written with ``msgspec.json.encode`` (e.g. a JSON line of ``watch --json``)."""
    result: Transition = _decoder.decode(data)
    return result


def playback_transition_id(session_id: str, kind: str, count: int) -> str:
    """``Transition.id`` of a playback transition: the session, the kind, and which one of that kind it is (1, 2,
    ...), e.g. ``"5017085c-...:playback_stalled:2"`` for the session's second stall."""
    if kind not in PLAYBACK_TYPES:
        raise ValueError(f"not a playback kind: {kind!r}; kinds are {sorted(PLAYBACK_TYPES)}")
    if count < 1:
        raise ValueError(f"count starts at 1, got {count}")
    return f"{session_id}:{kind}:{count}"
