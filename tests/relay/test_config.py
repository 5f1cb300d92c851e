"""Sink and store specs, and the relay's config file (TOML; a subset parser where tomllib is missing)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from sigma_async.relay import (
    FileCursorStore,
    FileSink,
    MemoryCursorStore,
    NatsSink,
    WebhookSink,
    load_config,
    open_sink,
    open_store,
)
from sigma_async.relay._config import parse_toml_subset
from sigma_async.testing import NatsServer

CONFIG = """\
# relay for the news desk
sink = "https://hooks.example.com/sigma#x"   # a '#' inside a string is not a comment
store = 'file:/var/lib/relay/cursors.json'
sessions = [
    "s-1",  # the morning show
    "s-2",
]
channels = ["c-1"]
interval = 1.5
poll = "lean"
lease-ttl = 10
metrics_port = 9_464
webhook_secret = "whsec-hidden"
"""


def test_the_config_file_gives_every_setting(tmp_path: Path) -> None:
    path = tmp_path / "relay.toml"
    path.write_text(CONFIG)
    config = load_config(path)
    assert config.sink == "https://hooks.example.com/sigma#x"
    assert config.store == "file:/var/lib/relay/cursors.json"
    assert (config.sessions, config.channels) == (["s-1", "s-2"], ["c-1"])
    assert (config.interval, config.poll, config.lease_ttl, config.metrics_port) == (1.5, "lean", 10.0, 9464)
    assert config.webhook_secret == "whsec-hidden" and "whsec-hidden" not in repr(config)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="compares with tomllib")
def test_the_subset_parser_reads_what_tomllib_reads() -> None:
    import tomllib

    assert parse_toml_subset(CONFIG) == tomllib.loads(CONFIG)
    assert parse_toml_subset("a = true\nb = []\nc = -2.5\n") == tomllib.loads("a = true\nb = []\nc = -2.5\n")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sink = ", "line 1"),
        ('colour = "blue"', "unknown setting 'colour'"),
        ("interval = \"fast\"", "interval has the wrong type"),
        ("sessions = [1, 2]", "list of id strings"),
        ("interval = true", "interval has the wrong type"),
    ],
)
def test_a_bad_config_file_is_named_with_its_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "relay.toml"
    path.write_text(text + "\n")
    with pytest.raises(ValueError, match=r"relay\.toml") as caught:
        load_config(path)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"), [("[relay]\nsink = '-'", "tables"), ("x = [1,", "unterminated"), ("a = 1\na = 2", "twice")]
)
def test_the_subset_parser_says_what_it_cannot_read(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_toml_subset(text)


def test_a_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read config file"):
        load_config(tmp_path / "nope.toml")


async def test_sink_specs(tmp_path: Path) -> None:
    for spec, kind in (("-", FileSink), (f"file:{tmp_path / 'out.jsonl'}", FileSink),
                       ("https://hooks.example.com/x", WebhookSink), ("http://127.0.0.1:9/x", WebhookSink)):
        sink = await open_sink(spec, webhook_secret="s")
        assert isinstance(sink, kind)
        await sink.aclose()
    async with NatsServer() as server:
        sink = await open_sink(f"{server.url}/SIGMA")
        assert isinstance(sink, NatsSink)
        await sink.aclose()


@pytest.mark.parametrize(
    "spec", ["", "file:", "ftp://x/y", "nats://127.0.0.1:4222", "nats://127.0.0.1:4222/a.b", "sqs://q?token=q-TOKEN"]
)
async def test_bad_sink_specs_are_refused_before_anything_opens(spec: str) -> None:
    with pytest.raises(ValueError) as caught:
        await open_sink(spec)
    assert "q-TOKEN" not in str(caught.value)


async def test_store_specs(tmp_path: Path) -> None:
    assert isinstance(await open_store("memory:"), MemoryCursorStore)
    assert isinstance(await open_store(f"file:{tmp_path / 'c.json'}"), FileCursorStore)
    for spec in ("", "file:", "redis://x/y", "memory"):
        with pytest.raises(ValueError):
            await open_store(spec)
