"""``sigma-async relay`` and a NATS server that cannot serve it as configured: unreachable at start, a stream that
does not take the relay's subjects, a bucket or a stream deleted while it runs. Each ends in one clear line."""

from __future__ import annotations

import json
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import nats
import pytest
from nats.js.api import StorageType

from sigma_async.testing import Emulator, NatsServer

from ._support import live_session, run_course
from .test_cli import finish, relay

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="sends POSIX signals")

SECRET_USER = "relay-user:NATS-PASSWORD-NEVER-SHOWN"


def closed_port() -> int:
    with socket.socket() as probe:  # a loopback port with nothing listening once closed
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.mark.parametrize("where", ["sink", "store", "replica"])
async def test_nats_unreachable_at_start_is_exit_1_within_about_10_s_naming_the_server(
    emu: Emulator, where: str
) -> None:
    _, sid = live_session(emu)
    port = closed_port()
    url = f"nats://{SECRET_USER}@127.0.0.1:{port}"
    args = {
        "sink": ["--sink", f"{url}/SIGMA"],
        "store": ["--sink", "-", "--store", f"{url}/relay"],
        "replica": ["--sink", "-", "--store", f"{url}/relay", "--replica", "a"],
    }[where]
    began = time.monotonic()
    status, out, err = await finish(await relay(emu, *args, "--session", sid), timeout=40)
    took = time.monotonic() - began
    assert status == 1, err
    assert took < 15, f"gave up after {took:.1f}s"
    (line,) = err.strip().splitlines()
    assert f"nats://127.0.0.1:{port}" in line and "cannot reach NATS" in line
    assert "NATS-PASSWORD" not in err + out and "relay-user" not in err + out
    assert "Traceback" not in err and out == ""


@pytest.fixture
async def server() -> AsyncIterator[NatsServer]:
    async with NatsServer() as s:
        yield s


async def test_a_stream_that_does_not_take_the_prefix_is_exit_1_saying_what_to_change(
    emu: Emulator, server: NatsServer
) -> None:
    nc = await nats.connect(server.url)
    try:
        await nc.jetstream().add_stream(name="EVENTS", subjects=["events.>"], storage=StorageType.FILE)
        channel_id, sid = live_session(emu)
        status, _, err = await finish(await relay(emu, "--sink", f"{server.url}/EVENTS", "--session", sid), 30)
        assert status == 1, err
        (line,) = err.strip().splitlines()
        assert "EVENTS" in line and "events.>" in line and "sigma.>" in line and "prefix" in line

        # What the message says to do works: a prefix the stream takes.
        proc = await relay(emu, "--sink", f"{server.url}/EVENTS?prefix=events", "--session", sid)
        run_course(emu, channel_id)
        status, _, err = await finish(proc)
        assert status == 0, err
        info = await nc.jetstream().stream_info("EVENTS")
        last = await nc.jetstream().get_msg("EVENTS", info.state.last_seq)
        assert last.subject == f"events.{sid}.ended"
    finally:
        await nc.close()


async def test_a_second_stream_over_the_same_subjects_is_exit_1_naming_the_one_that_has_them(
    emu: Emulator, server: NatsServer
) -> None:
    nc = await nats.connect(server.url)
    try:
        await nc.jetstream().add_stream(name="SIGMA", subjects=["sigma.>"], storage=StorageType.FILE)
    finally:
        await nc.close()
    _, sid = live_session(emu)
    status, _, err = await finish(await relay(emu, "--sink", f"{server.url}/OTHER", "--session", sid), 30)
    assert status == 1, err
    (line,) = err.strip().splitlines()
    assert "OTHER" in line and "stream SIGMA takes those subjects" in line and "prefix" in line


async def test_two_configurations_share_one_server_with_two_prefixes(emu: Emulator, server: NatsServer) -> None:
    (ch_a, sid_a), (ch_b, sid_b) = live_session(emu, "desk-a"), live_session(emu, "desk-b")
    first = await relay(emu, "--sink", f"{server.url}/DESK_A?prefix=desk.a", "--session", sid_a)
    second = await relay(emu, "--sink", f"{server.url}/DESK_B?prefix=desk.b", "--session", sid_b)
    run_course(emu, ch_a)
    run_course(emu, ch_b)
    assert (await finish(first))[0] == 0
    assert (await finish(second))[0] == 0
    nc = await nats.connect(server.url)
    try:
        js = nc.jetstream()
        for stream, prefix, sid in (("DESK_A", "desk.a", sid_a), ("DESK_B", "desk.b", sid_b)):
            info = await js.stream_info(stream)
            assert info.config.subjects == [f"{prefix}.>"]
            subjects = [(await js.get_msg(stream, seq)).subject for seq in range(1, info.state.last_seq + 1)]
            assert subjects and all(s.startswith(f"{prefix}.{sid}.") for s in subjects)
    finally:
        await nc.close()


@pytest.mark.parametrize("replica", [False, True], ids=["single", "replica"])
async def test_the_bucket_deleted_while_running_is_exit_1_never_a_relay_delivering_nothing(
    emu: Emulator, server: NatsServer, tmp_path: Path, replica: bool
) -> None:
    channel_id, sid = live_session(emu)
    out = tmp_path / "out.jsonl"
    extra = ["--replica", "a", "--lease-ttl", "2"] if replica else []
    proc = await relay(emu, "--sink", f"file:{out}", "--store", f"{server.url}/relay", "--session", sid, *extra)
    deadline = time.monotonic() + 20
    while not (out.exists() and out.read_text().count("\n") >= 3):
        assert time.monotonic() < deadline, "the relay delivers the session's first transitions"
        await anyio.sleep(0.05)
    nc = await nats.connect(server.url)
    try:
        await nc.jetstream().delete_key_value("relay")
    finally:
        await nc.close()
    emu.interrupt_signal(channel_id)  # something to deliver, and a cursor to save
    status, _, err = await finish(proc, timeout=30)
    assert status == 1, err
    assert "bucket relay was deleted" in err and "Traceback" not in err


async def test_a_stream_deleted_while_running_is_created_again_and_nothing_is_lost(
    emu: Emulator, server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    channel_id, sid = live_session(emu)
    proc = await relay(emu, "--sink", f"{server.url}/SIGMA", "--session", sid)
    nc = await nats.connect(server.url)
    try:
        js = nc.jetstream()
        deadline = time.monotonic() + 20
        while True:
            try:
                if (await js.stream_info("SIGMA")).state.messages >= 3:
                    break
            except nats.js.errors.NotFoundError:
                pass
            assert time.monotonic() < deadline, "the relay publishes the first transitions"
            await anyio.sleep(0.05)
        await js.delete_stream("SIGMA")
        run_course(emu, channel_id)
        status, _, err = await finish(proc)
        assert status == 0, err
        assert "stream SIGMA was deleted" in err
        info = await js.stream_info("SIGMA")
        records = [json.loads((await js.get_msg("SIGMA", seq)).data) for seq in range(1, info.state.last_seq + 1)]
        assert [r["kind"] for r in records][-3:] == ["restored", "stopped", "ended"]
    finally:
        await nc.close()
