"""Reading an events page item by item when the model refuses some of them: one bad event never costs the rest."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any, Final

import msgspec

from ._protocol import EVENT_PAGE_DECODER, Response, decode
from .models import Event, Page

__all__ = ["decode_event_page"]


class _LooseEvent(msgspec.Struct, rename="camel"):
    """Whatever an event item holds, typed or not: what is salvaged from an item the ``Event`` model refuses."""

    id: Any = None
    action: Any = None
    created_at: Any = None
    updated_at: Any = None
    session_id: Any = None
    actor: Any = None
    message: Any = None


_RAW_PAGE_DECODER: Final = msgspec.json.Decoder(Page[msgspec.Raw])
_EVENT_DECODER: Final = msgspec.json.Decoder(Event)
_LOOSE_EVENT_DECODER: Final = msgspec.json.Decoder(_LooseEvent)


def decode_event_page(response: Response, secrets: Sequence[str] = ()) -> tuple[Page[Event], list[bytes]]:
    """An events page, and the raw items that could not be read as events at all (skipped).

    One bad item never costs the others: an item the model refuses (a null ``createdAt``, a null action) is read
    leniently, with ``updatedAt`` standing in for a missing ``createdAt`` and ``""`` for a missing action (the
    watcher yields it as ``Unknown``). Only an item with no id or no readable time at all is skipped.
    """
    try:
        return EVENT_PAGE_DECODER.decode(response.body), []
    except msgspec.ValidationError:
        pass
    except (msgspec.DecodeError, RecursionError):
        return decode(response, EVENT_PAGE_DECODER, secrets), []  # not JSON at all: the usual error
    raw_page = decode(response, _RAW_PAGE_DECODER, secrets)  # the page itself is malformed: the usual error
    events: list[Event] = []
    skipped: list[bytes] = []
    for item in raw_page.data:
        event = _salvage_event(bytes(item))
        if event is None:
            skipped.append(bytes(item))
        else:
            events.append(event)
    page = Page(data=events, total=raw_page.total, count=raw_page.count, page=raw_page.page, per_page=raw_page.per_page)
    return page, skipped


def _salvage_event(item: bytes) -> Event | None:
    try:
        return _EVENT_DECODER.decode(item)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        pass
    try:
        loose = _LOOSE_EVENT_DECODER.decode(item)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None
    created, updated = _timestamp(loose.created_at), _timestamp(loose.updated_at)
    if not isinstance(loose.id, str) or not loose.id or (created or updated) is None:
        return None
    return Event(
        id=loose.id,
        action=loose.action if isinstance(loose.action, str) else "",
        created_at=created or updated,  # type: ignore[arg-type]  # one of the two is set: checked above
        updated_at=updated,
        session_id=loose.session_id if isinstance(loose.session_id, str) else None,
        actor=loose.actor if isinstance(loose.actor, str) else None,
        message=loose.message if isinstance(loose.message, str) else None,
    )


def _timestamp(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        stamp = msgspec.convert(value, datetime)
    except msgspec.ValidationError:
        return None
    return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=timezone.utc)
