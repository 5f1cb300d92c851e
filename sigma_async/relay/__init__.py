"""Push transitions out as they happen: to a file, a signed webhook or NATS JetStream, durable across restarts."""

from ._base import (
    ACCEPTED,
    Claims,
    CursorStore,
    Observer,
    Outcome,
    Ownership,
    OwnEverything,
    Sink,
    channel_key,
    parse_key,
    session_key,
)

__all__ = [
    "ACCEPTED",
    "Claims",
    "CursorStore",
    "Observer",
    "Outcome",
    "OwnEverything",
    "Ownership",
    "Sink",
    "channel_key",
    "parse_key",
    "session_key",
]
