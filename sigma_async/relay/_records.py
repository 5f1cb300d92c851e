"""What the relay sends: a transition's JSON (with its ``id``), and where in NATS it goes.

A record is exactly ``msgspec.json.encode(transition)``: ``kind``, ``session_id``, ``channel_id``, ``source``,
``event``, ``at``, ``previous``, ``cursor``, ``id`` (and ``raw`` for ``unknown``). Receivers read it back with
``sigma_async.decode_transition`` or any JSON parser.
"""

from __future__ import annotations

from typing import Final

import msgspec

from ..transitions import Transition

__all__ = ["SUBJECT_PREFIX", "encode_record", "subject_for"]

#: Every subject the relay publishes to starts with this token; the stream it creates takes ``sigma.>``.
SUBJECT_PREFIX: Final = "sigma"

_encoder = msgspec.json.Encoder()


def encode_record(transition: Transition) -> bytes:
    """The record for a transition: its JSON, ``id`` included."""
    return _encoder.encode(transition)


def subject_for(transition: Transition, prefix: str = SUBJECT_PREFIX) -> str:
    """``sigma.<session_id>.<kind>``.

    A ``.`` in a session id would split it into two subject tokens, so it is written as ``_`` here (the record
    still carries the exact id); the other characters an id may hold are valid in a NATS subject token.
    """
    return f"{prefix}.{transition.session_id.replace('.', '_')}.{transition.kind}"
