"""``sigma-async relay`` as a process, killed with SIGKILL mid-stream and started again: nothing is lost.

The emulator runs in the test (manual clock) and the relay in a subprocess that polls it over loopback, so a
``kill -9`` hits the relay at whatever it was doing: appending a record, saving a cursor, or between the two.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from sigma_async.testing import Emulator, NatsServer

from ._support import by_session, live_session, server_event_ids

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="sends POSIX signals")

SESSIONS = 4
INTERVAL = "0.05"


class RelayProcess:
    """One run of ``python -m sigma_async relay``, its stderr kept in a file for the failure message."""

    runs = 0

    def __init__(self, proc: asyncio.subprocess.Process, stderr: Path) -> None:
        self.proc = proc
        self.stderr = stderr

    @classmethod
    async def start(cls, emu: Emulator, tmp: Path, *args: str) -> RelayProcess:
        env = {
            **os.environ, "SIGMA_BASE_URL": emu.url, "SIGMA_USERNAME": emu.username,
            "SIGMA_SECRET_KEY": emu.secret_key, "SIGMA_APP_ID": emu.app_id,
        }  # fmt: skip
        env.pop("SIGMA_WEBHOOK_SECRET", None)
        cls.runs += 1
        stderr = tmp / f"relay-{cls.runs}.err"
        with stderr.open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "sigma_async", "relay", "--interval", INTERVAL, *args,
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=err, env=env,
            )  # fmt: skip
        return cls(proc, stderr)

    async def exit_status(self, timeout: float = 30) -> int:
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except asyncio.TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise AssertionError(f"relay still running after {timeout}s: {self.stderr.read_text()}") from None

    async def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        assert await self.proc.wait() == -signal.SIGKILL


def read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    # Every line whole: a kill never leaves half a record behind.
    return [json.loads(line) for line in path.read_text().splitlines()]


def flap(emu: Emulator, channels: list[str], round_: int) -> None:
    """One more event in every session: the signal lost on even rounds, back on odd ones."""
    for channel_id in channels:
        (emu.interrupt_signal if round_ % 2 == 0 else emu.restore_signal)(channel_id)


def check_complete(emu: Emulator, records: list[dict[str, Any]], sessions: list[str]) -> Counter[str]:
    """Everything the server holds was delivered, in order, ending once; returns how often each id went out."""
    seen: Counter[str] = Counter(r["id"] for r in records)
    assert all(seen), "every record carries the transition id"
    first_of: dict[str, dict[str, Any]] = {}
    for record in records:
        earlier = first_of.setdefault(record["id"], record)
        assert (earlier["kind"], earlier["session_id"]) == (record["kind"], record["session_id"]), "same id, same"
    grouped = by_session(records)
    assert set(grouped) == set(sessions)
    for sid in sessions:
        mine = grouped[sid]
        assert {r["event"]["id"] for r in mine if r["event"]} == server_event_ids(emu, sid), "no event lost"
        ended = {r["id"] for r in mine if r["kind"] == "ended"}
        assert len(ended) == 1 and mine[-1]["kind"] == "ended", "each session ends in one ended"
        # Taken once each, the records form the session's chain: each one's `previous` is the kind before it.
        once = list({r["id"]: r for r in mine}.values())
        assert [r["previous"] for r in once[1:]] == [r["kind"] for r in once[:-1]]
    return seen


async def until(probe: Callable[[], Awaitable[bool]], what: str, timeout: float = 20) -> None:
    """Wait on a condition with a deadline (the probe reads a file or a stream, so it is polled)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await probe():
        if loop.time() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.01)


async def crash_and_resume(
    emu: Emulator,
    tmp: Path,
    sink: str,
    store: str,
    count: Callable[[], Awaitable[int]],
    at_kill: Callable[[], object] = lambda: None,
) -> list[str]:
    """Sessions flap while the relay runs; SIGKILL it in a burst, flap more, restart it, end them all."""
    pairs = [live_session(emu, f"crash-{i}") for i in range(SESSIONS)]
    channels, sessions = [c for c, _ in pairs], [s for _, s in pairs]
    args = ["--sink", sink, "--store", store, *[a for sid in sessions for a in ("--session", sid)]]

    relay = await RelayProcess.start(emu, tmp, *args)
    round_ = 0
    for round_ in range(6):
        before = await count()
        flap(emu, channels, round_)
        await until(lambda n=before: _more(count, n), "the relay delivers")  # type: ignore[misc]
    # A burst of events, and the kill lands while it is being delivered and cursors saved.
    flap(emu, channels, round_ + 1)
    flap(emu, channels, round_ + 2)
    before = await count()
    await until(lambda: _more(count, before), "the relay delivers part of the burst")
    await relay.kill()
    at_kill()
    flap(emu, channels, round_ + 3)  # while no relay runs
    flap(emu, channels, round_ + 4)

    relay = await RelayProcess.start(emu, tmp, *args)
    flap(emu, channels, round_ + 5)
    for channel_id in channels:
        emu.stop_channel(channel_id)
    assert await relay.exit_status() == 0, relay.stderr.read_text()
    return sessions


async def _more(count: Callable[[], Awaitable[int]], than: int) -> bool:
    return await count() > than


async def test_a_killed_relay_resumes_with_nothing_lost_into_a_file(emu: Emulator, tmp_path: Path) -> None:
    out, cursors = tmp_path / "transitions.jsonl", tmp_path / "cursors.json"
    killed: dict[str, Any] = {}

    async def count() -> int:
        return len(read_lines(out))

    def note_kill() -> None:
        killed["lines"] = len(read_lines(out))
        killed["saved"] = json.loads(cursors.read_text()) if cursors.exists() else {}

    sessions = await crash_and_resume(emu, tmp_path, f"file:{out}", f"file:{cursors}", count, note_kill)
    records = read_lines(out)
    check_complete(emu, records, sessions)
    before, after = by_session(records[: killed["lines"]]), by_session(records[killed["lines"] :])
    for sid in sessions:
        # The second run starts right after the cursor saved when the kill came: it repeats exactly the records
        # accepted after that save (same ids), and nothing before it.
        sent = [r["id"] for r in before.get(sid, [])]
        saved = killed["saved"].get(sid)
        resume_at = next(i + 1 for i, r in enumerate(before[sid]) if r["cursor"] == saved) if saved else 0
        unsaved = sent[resume_at:]
        assert [r["id"] for r in after[sid]][: len(unsaved)] == unsaved
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".cursors.json")]  # noqa: ASYNC240
    assert not leftovers, "a save the kill cut short leaves nothing behind once the store is opened again"


async def test_a_killed_relay_resumes_into_jetstream_each_transition_once(emu: Emulator, tmp_path: Path) -> None:
    import nats

    async with NatsServer() as server:
        nc = await nats.connect(server.url)
        js = nc.jetstream()

        async def count() -> int:
            try:
                return int((await js.stream_info("SIGMA")).state.messages)
            except nats.js.errors.NotFoundError:
                return 0

        try:
            sessions = await crash_and_resume(
                emu, tmp_path, f"{server.url}/SIGMA", f"{server.url}/relay-cursors", count
            )
            info = await js.stream_info("SIGMA")
            records = []
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                msg = await js.get_msg("SIGMA", seq)
                record = json.loads(msg.data)
                assert msg.subject == f"sigma.{record['session_id']}.{record['kind']}"
                assert msg.headers and msg.headers["Nats-Msg-Id"] == record["id"]
                records.append(record)
        finally:
            await nc.close()
    seen = check_complete(emu, records, sessions)
    assert set(seen.values()) == {1}, "the duplicate window dropped every repeat"
