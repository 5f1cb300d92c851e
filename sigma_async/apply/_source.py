"""TOML text to data, and the line where each key of it was written (``tomllib`` reports none)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = ["KeyLines", "TomlSyntaxError", "read_toml"]

Path_ = tuple[str | int, ...]


class TomlSyntaxError(ValueError):
    """The text is not TOML; the message carries the parser's line and column."""


class KeyLines:
    """Where each key was written: ``lines.of(("channel", 2, "stop_timeout"))`` is a 1-based line number.

    Paths index arrays of tables and arrays by position. A path not found falls back to its longest written
    prefix (a key inside an inline table resolves to that table's line when all else fails), then to None.
    """

    def __init__(self, lines: Mapping[Path_, int]) -> None:
        self._lines = dict(lines)

    def of(self, path: Path_) -> int | None:
        for end in range(len(path), 0, -1):
            line = self._lines.get(path[:end])
            if line is not None:
                return line
        return None

    def __len__(self) -> int:
        return len(self._lines)


def read_toml(text: str) -> tuple[dict[str, Any], KeyLines]:
    """Parse ``text``; return the data and where each of its keys and tables was written.

    The data comes from ``tomllib`` alone. The lines come from a scan of the same text that runs only once the
    parser has accepted it, so the scanner can rely on the grammar being valid and only has to follow its
    structure: headers, keys, strings (which may hold anything, newlines included), arrays and inline tables.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TomlSyntaxError(f"not valid TOML: {exc}") from None
    return data, KeyLines(_Scanner(text).scan())


_BARE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_VALUE_END = frozenset(",]}#\n")


class _Scanner:
    """Follows valid TOML character by character, recording the line of each key path's first appearance."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.line = 1
        self.found: dict[Path_, int] = {}
        self.arrays: dict[Path_, int] = {}  # array-of-tables path -> how many elements so far

    def scan(self) -> dict[Path_, int]:
        table: Path_ = ()
        text = self.text
        while self.pos < len(text):
            self._skip_blank(newlines=True)
            if self.pos >= len(text):
                break
            if text.startswith("[[", self.pos):
                self.pos += 2
                table = self._array_header()
            elif text[self.pos] == "[":
                self.pos += 1
                table = self._resolve(self._key())
                self._note(table)
                self._expect("]")
            else:
                self._key_value(table)
        return self.found

    # -- structure ------------------------------------------------------------------------------------------

    def _array_header(self) -> Path_:
        parts = self._key()
        self._expect("]")
        self._expect("]")
        parent = self._resolve(parts[:-1])
        path = (*parent, parts[-1])
        self.arrays[path] = self.arrays.get(path, 0) + 1
        element = (*path, self.arrays[path] - 1)
        self._note(path)
        self._note(element)
        return element

    def _resolve(self, parts: Path_) -> Path_:
        """A header's dotted key as a path: a part naming an array of tables means its last element."""
        path: Path_ = ()
        for part in parts:
            path = (*path, part)
            if path in self.arrays:
                path = (*path, self.arrays[path] - 1)
        return path

    def _key_value(self, table: Path_) -> None:
        line = self.line
        parts = self._key()
        for end in range(1, len(parts) + 1):
            self._note((*table, *parts[:end]), line)
        self._skip_blank()
        self._expect("=")
        self._skip_blank()
        self._value((*table, *parts))

    def _value(self, path: Path_) -> None:
        text = self.text
        char = text[self.pos]
        if char in "\"'":
            self._string()
        elif char == "[":
            self.pos += 1
            index = 0
            while True:
                self._skip_blank(newlines=True)
                if text[self.pos] == "]":
                    self.pos += 1
                    return
                self._note((*path, index))
                self._value((*path, index))
                index += 1
                self._skip_blank(newlines=True)
                if text[self.pos] == ",":
                    self.pos += 1
        elif char == "{":
            self.pos += 1
            while True:
                self._skip_blank(newlines=True)
                if text[self.pos] == "}":
                    self.pos += 1
                    return
                self._key_value(path)
                self._skip_blank(newlines=True)
                if text[self.pos] == ",":
                    self.pos += 1
        else:  # a number, boolean or date: up to the next delimiter (a date may hold a space)
            while self.pos < len(text) and text[self.pos] not in _VALUE_END:
                self.pos += 1

    def _key(self) -> Path_:
        """A dotted key (``a."b.c".d``) as its parts, decoded."""
        parts: list[str | int] = []
        while True:
            self._skip_blank()
            char = self.text[self.pos]
            if char in "\"'":
                start = self.pos
                self._string()
                parts.append(_decode_quoted(self.text[start:self.pos]))
            else:
                start = self.pos
                while self.pos < len(self.text) and self.text[self.pos] in _BARE:
                    self.pos += 1
                parts.append(self.text[start:self.pos])
            self._skip_blank()
            if self.pos < len(self.text) and self.text[self.pos] == ".":
                self.pos += 1
                continue
            return tuple(parts)

    # -- tokens ---------------------------------------------------------------------------------------------

    def _string(self) -> None:
        text = self.text
        quote = text[self.pos]
        triple = text.startswith(quote * 3, self.pos)
        self.pos += 3 if triple else 1
        while True:
            char = text[self.pos]
            if char == "\\" and quote == '"':
                self.pos += 2 if text[self.pos + 1] != "\n" else 1  # an escaped newline is counted below
                continue
            if char == "\n":
                self.line += 1
            elif char == quote and (not triple or text.startswith(quote * 3, self.pos)):
                self.pos += 3 if triple else 1
                if triple:
                    # Up to two more quotes may close a multi-line string: """a""""" is 'a""'.
                    while self.pos < len(text) and text[self.pos] == quote:
                        self.pos += 1
                return
            self.pos += 1

    def _skip_blank(self, *, newlines: bool = False) -> None:
        """Spaces, tabs and comments; newlines too where the grammar allows them."""
        text = self.text
        while self.pos < len(text):
            char = text[self.pos]
            if char in " \t\r":
                self.pos += 1
            elif char == "#":
                while self.pos < len(text) and text[self.pos] != "\n":
                    self.pos += 1
            elif char == "\n" and newlines:
                self.line += 1
                self.pos += 1
            else:
                return

    def _expect(self, char: str) -> None:
        self._skip_blank()
        if self.text[self.pos] != char:  # pragma: no cover - the parser has accepted this text
            raise AssertionError(f"line {self.line}: expected {char!r}")
        self.pos += 1

    def _note(self, path: Path_, line: int | None = None) -> None:
        self.found.setdefault(path, self.line if line is None else line)


def _decode_quoted(raw: str) -> str:
    # The parser decodes escapes exactly as TOML defines them (\uXXXX, \UXXXXXXXX, ...).
    value = tomllib.loads(f"k = {raw}")["k"]
    assert isinstance(value, str)
    return value
