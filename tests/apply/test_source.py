"""Where each key of a TOML text was written: checked on tricky texts, and on documents hypothesis makes up."""

from __future__ import annotations

import json
import sys

import pytest
import tomli
from hypothesis import given, settings
from hypothesis import strategies as st

from sigma_async.apply import _source
from sigma_async.apply._source import TomlSyntaxError, read_toml

TRICKY = '''\
# a comment with [[channel]] and name = "x"
[defaults]
stop_timeout = 60 # trailing [[channel]]
tags = [
  "a", # a comment inside an array
  "b",
]
description = """
[[channel]]
name = "not a key"
"""

[[channel]]
name = "one"
"quoted.key" = 1
a.b . c = 2
dest = { x = 1, y = { z = "}" } }
escaped = "a \\" # not a comment [x]"
literal = 'C:\\path\\'

[[channel]]
name = 'two'
when = 1979-05-27 07:32:00Z
long = \'\'\'
x = 1
\'\'\'
[channel.machine]
enabled = false
'''


def test_each_key_is_found_on_its_own_line_whatever_strings_and_comments_hold() -> None:
    data, lines = read_toml(TRICKY)
    assert data["channel"][1]["machine"] == {"enabled": False}
    expected = {
        ("defaults",): 2, ("defaults", "stop_timeout"): 3, ("defaults", "tags"): 4, ("defaults", "tags", 1): 6,
        ("defaults", "description"): 8, ("channel", 0): 13, ("channel", 0, "name"): 14,
        ("channel", 0, "quoted.key"): 15, ("channel", 0, "a", "b", "c"): 16, ("channel", 0, "dest", "y", "z"): 17,
        ("channel", 0, "escaped"): 18, ("channel", 0, "literal"): 19, ("channel", 1): 21,
        ("channel", 1, "name"): 22, ("channel", 1, "when"): 23, ("channel", 1, "long"): 24,
        ("channel", 1, "machine"): 27, ("channel", 1, "machine", "enabled"): 28,
    }  # fmt: skip
    assert {path: lines.of(path) for path in expected} == expected


def test_a_path_not_written_falls_back_to_the_nearest_table_that_was() -> None:
    _, lines = read_toml(TRICKY)
    assert lines.of(("channel", 1, "stop_timeout")) == 21  # inherited from [defaults]: the channel's header
    assert lines.of(("nowhere",)) is None


def test_text_that_is_not_toml_is_refused_with_the_parsers_line() -> None:
    with pytest.raises(TomlSyntaxError, match=r"line 2"):
        read_toml('name = "a"\nname = = 2\n')


def test_python_3_10_reads_the_same_file_through_tomli(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_source, "tomllib", tomli)
    assert read_toml(TRICKY)[0] == (__import__("tomllib").loads(TRICKY) if sys.version_info >= (3, 11) else
                                    tomli.loads(TRICKY))  # fmt: skip


# -- documents made up by hypothesis, with the line of every key known as they are written ----------------------

_TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF, exclude_characters="\x7f"), max_size=12)
_LINE_TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=126, exclude_characters="\"'\\"), max_size=14)
_BARE = st.from_regex(r"[a-z][a-z0-9_-]{0,5}", fullmatch=True)


@st.composite
def _value(draw: st.DrawFn, key_line: int) -> tuple[list[str], dict[tuple[object, ...], int]]:
    """A value as text lines (the first continues the key's line) and the lines of the keys inside it."""
    kind = draw(st.sampled_from(["int", "bool", "date", "basic", "literal", "multi", "multi_literal", "array",
                                 "inline"]))  # fmt: skip
    if kind == "int":
        return [str(draw(st.integers()))], {}
    if kind == "bool":
        return [draw(st.sampled_from(["true", "false"]))], {}
    if kind == "date":
        return ["1979-05-27 07:32:00Z"], {}
    if kind == "basic":
        return [json.dumps(draw(_TEXT), ensure_ascii=False)], {}
    if kind == "literal":
        return ["'" + draw(_LINE_TEXT) + "'"], {}
    if kind in ("multi", "multi_literal"):
        quote = '"""' if kind == "multi" else "'''"
        body = draw(st.lists(st.one_of(_LINE_TEXT, st.just("[[channel]]"), st.just("key = 1")), max_size=3))
        return [quote, *body, quote], {}
    if kind == "array":
        items = draw(st.lists(st.integers(), max_size=3))
        lines, inner = ["["], {}
        for index, item in enumerate(items):
            inner[(index,)] = key_line + len(lines)
            lines.append(f"  {item}, # item {index}")
        return [*lines, "]"], inner
    keys = draw(st.lists(_BARE, unique=True, max_size=3))
    return ["{ " + ", ".join(f"{k} = {i}" for i, k in enumerate(keys)) + " }"], {(k,): key_line for k in keys}


@st.composite
def _document(draw: st.DrawFn) -> tuple[str, dict[tuple[object, ...], int]]:
    lines: list[str] = []
    expected: dict[tuple[object, ...], int] = {}
    arrays: dict[str, int] = {}
    tables = draw(st.lists(st.sampled_from(["root", "table", "array"]), min_size=1, max_size=5))
    for position, kind in enumerate(tables):
        if kind == "root" and position:
            kind = "array"
        if kind == "table":
            name = f"t{position}"
            path: tuple[object, ...] = (name,)
            lines.append(f"[ {name} ]  # a table")
        elif kind == "array":
            name = draw(st.sampled_from(["channel", "other"]))
            arrays[name] = arrays.get(name, 0) + 1
            path = (name, arrays[name] - 1)
            lines.append(f"[[{name}]]")
        else:
            path = ()
        if path:
            expected[path] = len(lines)
        for index, key in enumerate(draw(st.lists(_BARE, unique=True, max_size=4))):
            if draw(st.booleans()):
                lines.append(draw(st.sampled_from(["", "# comment = 1", "   "])))
            # The dotted prefix has a capital: no bare key drawn above can collide with it.
            written = draw(st.sampled_from([key, f'"{key}.q"', f"D{index}.{key}"]))
            parts: tuple[object, ...] = (
                (f"{key}.q",) if written.startswith('"') else (f"D{index}", key) if "." in written else (key,)
            )
            line = len(lines) + 1
            value, inner = draw(_value(line))
            lines.append(f"{written} = {value[0]}")
            lines.extend(value[1:])
            expected[(*path, *parts)] = line
            expected.update({(*path, *parts, *sub): at for sub, at in inner.items()})
    return "\n".join(lines) + "\n", expected


@settings(max_examples=300, deadline=None)
@given(_document())
def test_every_key_of_any_document_is_found_where_it_was_written(
    doc: tuple[str, dict[tuple[object, ...], int]],
) -> None:
    text, expected = doc
    _, lines = read_toml(text)
    assert {path: lines.of(path) for path in expected} == expected, text
