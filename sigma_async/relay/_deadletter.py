"""The dead-letter: where a record the sink rejected for good goes, so that no record is ever silently dropped.

An entry is one JSON object: the rejected record whole (``record``), the receiver's ``status`` and the first 200
bytes of its ``answer``, the reason logged (``detail``), the sink it was meant for and when it was rejected::

    {"id": "...", "session_id": "...", "kind": "interrupted", "status": 422, "answer": "unknown kind",
     "detail": "...", "sink": "https://hooks.example.com/sigma", "rejected_at": "2024-07-22T11:34:20Z",
     "record": {"kind": "interrupted", "session_id": "...", ...}}

It goes to any sink (``--dead-letter SINK``); without one, to ``rejected.jsonl`` beside a ``file:`` store, or as
JSON lines on standard error.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import msgspec

from ..transitions import Transition
from ._base import Outcome

__all__ = ["DEFAULT_FILE", "Rejection", "default_dead_letter", "rejection_entry"]

#: The dead-letter file's name beside a ``file:`` store.
DEFAULT_FILE = "rejected.jsonl"


class Rejection(msgspec.Struct, frozen=True):
    """One dead-letter entry (see the module doc); ``record`` is the record's own JSON, embedded as it was sent."""

    id: str
    session_id: str
    kind: str
    status: int | None
    answer: str
    detail: str
    sink: str
    rejected_at: datetime
    record: msgspec.Raw


_encoder = msgspec.json.Encoder()


def rejection_entry(record: bytes, transition: Transition, outcome: Outcome, *, sink: str, at: float) -> bytes:
    """The dead-letter entry for ``record``, which ``sink`` rejected with ``outcome`` at ``at`` (unix seconds)."""
    entry = Rejection(
        id=transition.id, session_id=transition.session_id, kind=transition.kind, status=outcome.status,
        answer=outcome.answer[:200], detail=outcome.detail, sink=sink,
        rejected_at=datetime.fromtimestamp(at, timezone.utc), record=msgspec.Raw(record),
    )  # fmt: skip
    return _encoder.encode(entry)


def default_dead_letter(store_spec: str) -> str:
    """The dead-letter sink spec when none is given: ``file:<store's folder>/rejected.jsonl`` beside a ``file:``
    store, else ``stderr``."""
    if store_spec.startswith("file:") and len(store_spec) > len("file:"):
        return f"file:{Path(store_spec[len('file:') :]).parent / DEFAULT_FILE}"
    return "stderr"
