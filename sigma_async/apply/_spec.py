"""The channels file: ``[defaults]`` and ``[[channel]]`` tables in TOML, checked whole before anything is sent."""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..models import ChannelCreate, Machine, S3Destination
from ._source import KeyLines, Path_, TomlSyntaxError, read_toml

__all__ = ["DesiredChannel", "Problem", "SpecFileError", "load_desired", "parse_desired"]


@dataclass(frozen=True)
class DesiredChannel:
    """One ``[[channel]]`` of the file: its name (the key apply tracks it by), its spec, and whether it runs.

    ``secrets`` holds the values that must never be written anywhere: the S3 secret key and every string that
    took a value from the environment (``${NAME}``). The state keeps only a salted, slow fingerprint of them.
    """

    name: str
    spec: ChannelCreate
    running: bool = False
    line: int = 0
    secrets: frozenset[str] = field(default=frozenset(), repr=False)


@dataclass(frozen=True)
class Problem:
    """What is wrong with the file, where: ``channels.toml:12: stop_timeout: expected an integer, got a string``."""

    line: int | None
    key: str
    message: str

    def describe(self, source: str) -> str:
        where = f"{source}:{self.line}" if self.line is not None else source
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class SpecFileError(ValueError):
    """The file cannot be applied; ``problems`` lists every one found, each with its line and key."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(p.describe(source) for p in problems))


def load_desired(path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None) -> list[DesiredChannel]:
    """Read and check a channels file; ``SpecFileError`` lists everything wrong with it.

    >>> desired = load_desired("channels.toml")          # ${NAME} read from os.environ
    >>> [(d.name, d.running) for d in desired]
    [('stage-1', True), ('stage-2', False)]
    """
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise SpecFileError(str(path), [Problem(None, "", f"cannot read: {reason}")]) from None
    return parse_desired(text, source=str(path), env=env)


def parse_desired(
    text: str, *, source: str = "<channels>", env: Mapping[str, str] | None = None
) -> list[DesiredChannel]:
    """``load_desired`` for text already in hand; ``source`` names it in messages."""
    try:
        data, lines = read_toml(text)
    except TomlSyntaxError as exc:
        raise SpecFileError(source, [Problem(None, "", str(exc))]) from None
    checker = _Checker(lines, os.environ if env is None else env)
    desired = checker.document(data)
    if checker.problems:
        checker.problems.sort(key=lambda p: p.line or 0)
        raise SpecFileError(source, checker.problems)
    return desired


# -- the schema -----------------------------------------------------------------------------------------------

Check = Callable[[Any], str | None]  # None when the value is right; otherwise what was expected


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return f"a {type(value).__name__}"  # dates and times


def _string(value: Any) -> str | None:
    return None if isinstance(value, str) else f"expected a string, got {_kind(value)}"


def _boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"expected true or false, got {_kind(value)}"


def _seconds(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return f"expected a whole number of seconds, got {_kind(value)}"
    return None if value >= 0 else "expected a whole number of seconds >= 0, got a negative number"


def _strings(value: Any) -> str | None:
    if not isinstance(value, list):
        return f"expected an array of strings, got {_kind(value)}"
    bad = next((v for v in value if not isinstance(v, str)), None)
    return None if bad is None else f"expected an array of strings, got {_kind(bad)} in it"


def _profiles(value: Any) -> str | None:
    return _strings(value) or (None if value else "expected at least one transcode profile id")


S3_KEYS: dict[str, Check] = {name: _string for name in S3Destination.__struct_fields__}
S3_REQUIRED = ("access_key", "bucket", "endpoint", "secret_key", "region")
MACHINE_KEYS: dict[str, Check] = {"enabled": _boolean, "machine_id": _string, "machine_type": _string}
#: Every key a ``[[channel]]`` may hold, with its check; ``[defaults]`` takes the same but ``name``.
CHANNEL_KEYS: dict[str, Check | dict[str, Check]] = {
    "name": _string,
    "running": _boolean,
    "description": _string,
    "tags": _strings,
    "transcode_profile": _profiles,
    "type": _string,
    "mode": _string,
    "stop_timeout": _seconds,
    "catchup": _boolean,
    "record": _boolean,
    "output_format": _string,
    "machine": MACHINE_KEYS,
    "destination_catchup": S3_KEYS,
}
assert set(CHANNEL_KEYS) - {"name", "running"} == set(ChannelCreate.__struct_fields__) - {"name"}
assert set(MACHINE_KEYS) == set(Machine.__struct_fields__)

_REFERENCE = re.compile(r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)\}|(\{[^}]*\}?))")


class _Checker:
    """Walks the parsed document, collecting every problem rather than stopping at the first."""

    def __init__(self, lines: KeyLines, env: Mapping[str, str]) -> None:
        self.lines = lines
        self.env = env
        self.problems: list[Problem] = []
        self.resolved: set[str] = set()  # every value taken from the environment

    def problem(self, path: Path_ | None, key: str, message: str) -> None:
        self.problems.append(Problem(self.lines.of(path) if path else None, key, message))

    def document(self, data: dict[str, Any]) -> list[DesiredChannel]:
        for key in data:
            if key not in ("defaults", "channel"):
                self.problem((key,), key, "unknown key: a channels file holds [defaults] and [[channel]] tables")
        defaults = data.get("defaults", {})
        if not isinstance(defaults, dict):
            self.problem(("defaults",), "defaults", f"expected a table ([defaults]), got {_kind(defaults)}")
            defaults = {}
        channels = data.get("channel", [])
        if not isinstance(channels, list) or not all(isinstance(c, dict) for c in channels):
            self.problem(("channel",), "channel", "expected [[channel]] tables")
            channels = []
        elif not channels and not self.problems:
            self.problem(None, "", "no [[channel]] tables: nothing to apply")
        defaults = self.table(("defaults",), "defaults.", defaults, exclude="name")
        defaults_ok = not self.problems
        seen: dict[str, int | None] = {}
        desired: list[DesiredChannel] = []
        for index, table in enumerate(channels):
            path: Path_ = ("channel", index)
            before = len(self.problems)
            checked = self.table(path, "", table)
            name = checked.get("name")
            if "name" not in table:
                self.problem(path, "name", "missing: every [[channel]] needs a name")
            elif isinstance(name, str) and not name.strip():
                self.problem((*path, "name"), "name", "must not be empty")
            elif isinstance(name, str) and name in seen:
                self.problem((*path, "name"), "name", f"duplicate name {name!r} (first at line {seen[name]})")
            elif isinstance(name, str):
                seen[name] = self.lines.of((*path, "name"))
                if defaults_ok and len(self.problems) == before:
                    channel = self.channel(path, name, {**defaults, **checked})
                    if channel is not None:
                        desired.append(channel)
        return desired

    def table(self, path: Path_, prefix: str, table: dict[str, Any], *, exclude: str = "") -> dict[str, Any]:
        """The keys of one table that pass their checks, with ``${NAME}`` resolved; the rest become problems."""
        good: dict[str, Any] = {}
        for key, value in table.items():
            check = CHANNEL_KEYS.get(key) if key != exclude else None
            where, shown = (*path, key), prefix + key
            if check is None:
                self.unknown(where, shown, key, [k for k in CHANNEL_KEYS if k != exclude])
            elif not isinstance(check, dict):
                message = check(value)
                if message is None:
                    good[key] = self.resolve(where, shown, value)
                else:
                    self.problem(where, shown, message)
            elif not isinstance(value, dict):
                self.problem(where, shown, f"expected a table, got {_kind(value)}")
            else:
                good[key] = self.subtable(where, shown, value, check)
        return good

    def subtable(self, path: Path_, shown: str, table: dict[str, Any], checks: dict[str, Check]) -> dict[str, Any]:
        good: dict[str, Any] = {}
        for key, value in table.items():
            if key not in checks:
                self.unknown((*path, key), f"{shown}.{key}", key, list(checks))
            elif (message := checks[key](value)) is not None:
                self.problem((*path, key), f"{shown}.{key}", message)
            else:
                good[key] = self.resolve((*path, key), f"{shown}.{key}", value)
        # A table given replaces the default's whole, so it must be complete where it is written.
        missing = [k for k in S3_REQUIRED if k not in table] if checks is S3_KEYS else []
        if missing:
            self.problem(path, shown, "missing " + ", ".join(missing))
        return good

    def unknown(self, path: Path_, shown: str, key: str, known: list[str]) -> None:
        close = difflib.get_close_matches(key, known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else f" (known: {', '.join(known)})"
        self.problem(path, shown, "unknown key" + hint)

    def resolve(self, path: Path_, shown: str, value: Any) -> Any:
        """``${NAME}`` in a string (or in an array's strings) from the environment; ``$$`` is a literal ``$``."""
        if isinstance(value, list):
            return [self.resolve((*path, i), shown, v) for i, v in enumerate(value)]
        if not isinstance(value, str) or "$" not in value:
            return value
        took_env = False

        def substitute(match: re.Match[str]) -> str:
            nonlocal took_env
            name, malformed = match.group(1), match.group(2)
            if malformed is not None:
                self.problem(path, shown, f"malformed reference ${malformed}: write ${{NAME}}, or $$ for a $")
                return ""
            if name is None:
                return "$"
            if name not in self.env:
                self.problem(path, shown, f"${{{name}}} is not set in the environment")
                return ""
            took_env = True
            return self.env[name]

        result = _REFERENCE.sub(substitute, value)
        if took_env:
            self.resolved.add(result)
        return result

    def channel(self, path: Path_, name: str, fields: dict[str, Any]) -> DesiredChannel | None:
        """The ``DesiredChannel`` of one table whose keys all passed their checks; None after a problem."""
        running = bool(fields.pop("running", False))
        if fields.get("catchup") and "destination_catchup" not in fields:
            self.problem((*path, "catchup"), "catchup", "catchup = true needs a destination_catchup")
            return None
        secrets = {s for s in _strings_in({k: v for k, v in fields.items() if k != "name"}) if s in self.resolved}
        if "destination_catchup" in fields:
            fields["destination_catchup"] = S3Destination(**fields["destination_catchup"])
            secrets.add(fields["destination_catchup"].secret_key)
        if "machine" in fields:
            fields["machine"] = Machine(**fields["machine"])
        try:
            spec = ChannelCreate(**fields)
        except (TypeError, ValueError) as exc:  # a rule of ChannelCreate's not checked above
            self.problem(path, "channel", str(exc))
            return None
        return DesiredChannel(name, spec, running, self.lines.of(path) or 0, frozenset(secrets))


def _strings_in(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings_in(item)
