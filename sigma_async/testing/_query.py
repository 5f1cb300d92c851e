"""Listing parameters of the emulated API: the JSON filter ``q``, ``sort=field|dir``, ``page`` and ``perPage``."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import msgspec

from ._state import EmulatorError

__all__ = ["MAX_PER_PAGE", "ListQuery", "parse_list_query"]


class _Identified(Protocol):
    @property
    def id(self) -> str: ...


T = TypeVar("T", bound=_Identified)

MAX_PER_PAGE = 1000
_SCALARS = (str, int, float, bool, type(None))


@dataclass(frozen=True)
class ListQuery:
    """A parsed listing request. ``filters`` are ``(attribute, value)`` pairs that must all hold."""

    filters: tuple[tuple[str, Any], ...] = ()
    sort_attr: str = "updated_at"
    descending: bool = True
    page: int = 1
    per_page: int = 100

    def value_of(self, attr: str) -> Any:
        """The value a filter requires for ``attr``, or None when there is no such filter."""
        for name, value in self.filters:
            if name == attr:
                return value
        return None

    def select(self, items: Iterable[T]) -> tuple[list[T], int]:
        """Filter, sort (ties broken by ``id`` in the same direction) and cut one page: ``(page_items, total)``."""
        matched = [item for item in items if all(getattr(item, a) == v for a, v in self.filters)]
        attr = self.sort_attr

        def key(item: T) -> tuple[bool, Any, str]:
            value = getattr(item, attr)
            # None sorts before every value, so "asc" lists the unset ones first, as a database would.
            return (value is not None, value, item.id)

        matched.sort(key=key, reverse=self.descending)
        start = (self.page - 1) * self.per_page
        return matched[start : start + self.per_page], len(matched)


def parse_list_query(
    params: Mapping[str, str],
    *,
    filter_fields: Sequence[str],
    sort_fields: Sequence[str],
    default_sort: str = "updatedAt|desc",
) -> ListQuery:
    """Read ``q``, ``sort``, ``page`` and ``perPage``; a bad one raises ``EmulatorError(400)``.

    ``q`` is JSON: ``{"channelId": id}``, or ``{"$and": [{"sessionId": id}, ...]}``, equality only.
    """
    filters = _parse_filter(params.get("q"), filter_fields)
    sort_attr, descending = _parse_sort(params.get("sort") or default_sort, sort_fields)
    page = _parse_int(params, "page", 1, minimum=1, maximum=None)
    per_page = _parse_int(params, "perPage", 100, minimum=1, maximum=MAX_PER_PAGE)
    return ListQuery(filters=filters, sort_attr=sort_attr, descending=descending, page=page, per_page=per_page)


def _parse_filter(raw: str | None, fields: Sequence[str]) -> tuple[tuple[str, Any], ...]:
    if raw is None or not raw.strip():
        return ()
    try:
        q = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise EmulatorError(400, f"q must be a JSON object: {exc}") from None
    pairs: list[tuple[str, Any]] = []
    _collect(q, fields, pairs)
    return tuple(pairs)


def _collect(clause: object, fields: Sequence[str], out: list[tuple[str, Any]]) -> None:
    if not isinstance(clause, dict):
        raise EmulatorError(400, "q must be a JSON object")
    for key, value in clause.items():
        if key == "$and":
            if not isinstance(value, list):
                raise EmulatorError(400, "$and takes a list of objects")
            for sub in value:
                _collect(sub, fields, out)
        elif key in fields:
            if not isinstance(value, _SCALARS):
                raise EmulatorError(400, f"q.{key}: only equality with a plain value is supported")
            out.append((_snake(key), value))
        else:
            raise EmulatorError(400, f"q: cannot filter on {key!r} (supported: {', '.join(fields)}, $and)")


def _parse_sort(raw: str, fields: Sequence[str]) -> tuple[str, bool]:
    field, _, direction = raw.partition("|")
    direction = direction.lower() or "asc"
    if field not in fields or direction not in ("asc", "desc"):
        raise EmulatorError(400, f"sort must be <field>|asc or <field>|desc with field one of {', '.join(fields)}")
    return _snake(field), direction == "desc"


def _parse_int(params: Mapping[str, str], name: str, default: int, *, minimum: int, maximum: int | None) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise EmulatorError(400, f"{name} must be an integer, got {raw!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        upper = f"..{maximum}" if maximum is not None else " or more"
        raise EmulatorError(400, f"{name} must be {minimum}{upper}, got {value}")
    return value


def _snake(camel: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower()
