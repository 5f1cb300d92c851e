"""Channel specs for ``create-many``: a JSON array or JSON lines, snake_case or the wire's camelCase keys."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import msgspec

from ..models import ChannelCreate, Machine, S3Destination

__all__ = ["InvalidSpec", "SpecError", "SpecItem", "parse_specs"]

_SPEC_FIELDS = frozenset(ChannelCreate.__struct_fields__)
_S3_FIELDS = frozenset(S3Destination.__struct_fields__)
_MACHINE_FIELDS = frozenset(Machine.__struct_fields__)
_CAMEL_HUMP = re.compile(r"(?<=[a-z0-9])([A-Z])")


class SpecError(ValueError):
    """The input as a whole is not a JSON array or JSON lines: nothing can be created from it."""


class InvalidSpec(ValueError):
    """One item cannot become a ``ChannelCreate``: it fails in its own slot and is never sent."""


@dataclass
class SpecItem:
    """One item of the input: its ``spec`` when valid, else the ``error`` that makes it invalid."""

    name: str
    spec: ChannelCreate | None = None
    error: InvalidSpec | None = None


def parse_specs(data: bytes, *, s3_secret: str | None = None) -> list[SpecItem]:
    """Read every item; an invalid item is reported in its own slot rather than failing the whole input.

    Keys may be snake_case (``stop_timeout``) or the API's camelCase (``stopTimeout``); a catchup destination
    may be the S3 object itself or the wire's ``{"type": "s3", "s3": {...}}``. A destination without
    ``secretKey`` takes ``s3_secret`` (from ``SIGMA_S3_SECRET_KEY``), so spec files need not hold the secret.

    >>> [i.spec.name for i in parse_specs(b'{"name": "a"}\\n{"name": "b", "stopTimeout": 60}')]
    ['a', 'b']
    """
    text = data.decode("utf-8-sig", errors="replace").strip()
    if not text:
        raise SpecError("no channel specs (empty input)")
    raw: list[Any]
    if text.startswith("["):
        try:
            decoded = msgspec.json.decode(text)
        except msgspec.DecodeError as exc:
            raise SpecError(f"not a valid JSON array: {exc}") from None
        if not isinstance(decoded, list):
            raise SpecError("expected a JSON array of channel specs")
        raw = decoded
    else:
        raw = [_json_line(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    return [_item(value, s3_secret) for value in raw]


class _BadLine:
    def __init__(self, error: InvalidSpec) -> None:
        self.error = error


def _json_line(number: int, line: str) -> Any:
    try:
        return msgspec.json.decode(line)
    except msgspec.DecodeError as exc:
        # One broken line is that item's failure, not the whole file's.
        return _BadLine(InvalidSpec(f"line {number} is not valid JSON ({exc})"))


def _item(value: Any, s3_secret: str | None) -> SpecItem:
    if isinstance(value, _BadLine):
        return SpecItem(name="", error=value.error)
    name = value.get("name") if isinstance(value, dict) else None
    shown = name if isinstance(name, str) else ""
    try:
        return SpecItem(name=shown, spec=_spec(value, s3_secret))
    except (msgspec.ValidationError, ValueError, TypeError) as exc:
        return SpecItem(name=shown, error=exc if isinstance(exc, InvalidSpec) else InvalidSpec(str(exc)))


def _spec(value: Any, s3_secret: str | None) -> ChannelCreate:
    if not isinstance(value, dict):
        raise InvalidSpec(f"each channel spec must be a JSON object, got {type(value).__name__}")
    fields = _keys(value, snake=True, allowed=_SPEC_FIELDS, where="")
    dest = fields.get("destination_catchup")
    if isinstance(dest, dict):
        if isinstance(dest.get("s3"), dict):  # the wire's {"type": "s3", "s3": {...}}
            dest = dest["s3"]
        dest = _keys(dest, snake=False, allowed=_S3_FIELDS, where="destination_catchup.")
        if not dest.get("secretKey"):
            if not s3_secret:
                raise InvalidSpec("destination_catchup needs a secretKey, or SIGMA_S3_SECRET_KEY in the environment")
            dest["secretKey"] = s3_secret
        fields["destination_catchup"] = dest
    machine = fields.get("machine")
    if isinstance(machine, dict):
        fields["machine"] = _keys(machine, snake=False, allowed=_MACHINE_FIELDS, where="machine.")
    return msgspec.convert(fields, ChannelCreate)


def _keys(obj: dict[str, Any], *, snake: bool, allowed: frozenset[str], where: str) -> dict[str, Any]:
    """Keys in the form the target struct reads (snake_case attributes, or camelCase for ``rename="camel"``);
    an unknown key is an error, since a misspelt option silently left at its default is worse."""
    result: dict[str, Any] = {}
    for key, item in obj.items():
        attr = _CAMEL_HUMP.sub(r"_\1", key).lower() if isinstance(key, str) else key
        if attr not in allowed:
            raise InvalidSpec(f"unknown field {where}{key!s}")
        result[attr if snake else _camel(attr)] = item
    return result


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(part.capitalize() for part in rest)
