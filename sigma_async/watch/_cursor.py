"""Watch cursors: a tracker's position as short URL-safe text that checks itself.

A cursor is msgpack, then a 6-byte keyed BLAKE2b checksum, then base64url. The checksum is not a secret
(anyone can make a cursor): it is there so that a cursor damaged in storage or in transit (one character
changed, a truncated copy) is a ``ValueError`` at the call that is given it, never a watch that silently
resumes from the wrong place and skips events.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from datetime import datetime
from typing import Final

import msgspec

from ._kinds import KINDS
from ._window import event_key

__all__ = ["CURSOR_VERSION", "MAX_CURSOR_KEYS", "Cursor", "decode_cursor", "encode_cursor"]

CURSOR_VERSION: Final = 3
#: Event keys a cursor keeps: the newest read within the late window. Past that (a burst no real server
#: writes) resuming may repeat an event, with the same ``Transition.id``, never skip one.
MAX_CURSOR_KEYS: Final = 64

_CHECK_BYTES: Final = 6
_CHECK_KEY: Final = b"sigma-async watch cursor v3"
_SIGNALS: Final = frozenset({"stable", "interrupted", "restored"})
_RANKS: Final = frozenset({-1, 0, 2, 4, 5, 6, 8})
_HELD_STEPS: Final = frozenset({"initializing", "started", "live", "live (seen on air)", "stopped"})


class Cursor(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    """What a cursor holds; short keys keep it short."""

    v: int
    s: str  # session id
    c: str | None = None  # channel id, for a session followed through its channel
    ca: datetime | None = None  # the session's createdAt, when known: where a channel watch resumes its listing
    m: datetime | None = None  # mark: updatedAt of the newest event read
    i: list[int] = msgspec.field(default_factory=list)  # keys of the newest events read within the window
    r: int = -1  # lifecycle position reached
    lv: bool = False  # Live yielded
    g: str | None = None  # last signal kind
    st: str | None = None  # last status read, normalised
    n: int = 0  # unknown statuses yielded
    k: str | None = None  # kind of the last transition
    e: datetime | None = None  # terminal status read at this time: the end is held for the final events read
    h: dict[str, list[datetime]] = msgspec.field(default_factory=dict)  # steps shown, held: [when shown, time]


class _CursorV2(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    """The JSON cursors of earlier releases: read, so that saved cursors still resume after an upgrade."""

    v: int
    s: str
    m: datetime | None = None
    i: list[str] = msgspec.field(default_factory=list)
    r: int = -1
    lv: bool = False
    g: str | None = None
    st: str | None = None
    n: int = 0
    k: str | None = None
    e: datetime | None = None


_encoder: Final = msgspec.msgpack.Encoder()
_decoder: Final = msgspec.msgpack.Decoder(Cursor)
_v2_decoder: Final = msgspec.json.Decoder(_CursorV2)


def encode_cursor(c: Cursor) -> str:
    payload = _encoder.encode(c)
    return base64.urlsafe_b64encode(payload + _check(payload)).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str, session_id: str) -> Cursor:
    """The cursor's content; ``ValueError`` naming the problem if it is damaged or not this session's."""
    if not isinstance(cursor, str):
        raise ValueError(f"a watch cursor is a str (a Transition.cursor), not {type(cursor).__name__}")
    bad = ValueError(f"not a watch cursor, or a damaged one (pass a Transition.cursor unchanged): {cursor[:40]!r}")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError) as exc:
        raise bad from exc
    if raw.startswith(b"{"):
        c = _from_v2(raw, bad)
    else:
        payload, check = raw[:-_CHECK_BYTES], raw[-_CHECK_BYTES:]
        if len(raw) <= _CHECK_BYTES or not hmac.compare_digest(check, _check(payload)):
            raise bad
        try:
            c = _decoder.decode(payload)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
            raise bad from exc
        if c.v != CURSOR_VERSION:
            raise ValueError(f"watch cursor of version {c.v}, this sigma-async reads version {CURSOR_VERSION}")
    if c.s != session_id:
        raise ValueError(f"watch cursor belongs to session {c.s!r}, not {session_id!r}")
    if (c.k is not None and c.k not in KINDS) or (c.g is not None and c.g not in _SIGNALS):
        raise ValueError(f"watch cursor names an unknown kind: {c.k!r}, {c.g!r}")
    if c.r not in _RANKS or c.n < 0:
        raise ValueError("watch cursor holds an impossible position")
    if c.m is None and c.i:
        raise ValueError("watch cursor has event ids but no mark")
    if any(t is not None and t.tzinfo is None for t in (c.m, c.ca, c.e)):
        raise ValueError("watch cursor has a timestamp without a zone")
    if any(step not in _HELD_STEPS or len(pair) != 2 for step, pair in c.h.items()):
        raise ValueError("watch cursor holds an impossible held step")
    return c


def _check(payload: bytes) -> bytes:
    return hashlib.blake2b(payload, digest_size=_CHECK_BYTES, key=_CHECK_KEY).digest()


def _from_v2(raw: bytes, bad: ValueError) -> Cursor:
    try:
        old = _v2_decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
        raise bad from exc
    if old.v != 2:
        raise ValueError(f"watch cursor of version {old.v}, this sigma-async reads version {CURSOR_VERSION}")
    return Cursor(
        v=CURSOR_VERSION, s=old.s, m=old.m, i=[event_key(i) for i in old.i], r=old.r, lv=old.lv, g=old.g,
        st=old.st, n=old.n, k=old.k, e=old.e,
    )  # fmt: skip
