"""``examples/webhook_receiver.py``, run as its docstring says, behind a real ``sigma-async relay``."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3
import sys
import textwrap
import time
from pathlib import Path

import aiohttp
import pytest

from sigma_async.relay import sign
from sigma_async.testing import Emulator

from ._support import live_session, run_course
from .test_cli import finish, relay

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="sends POSIX signals")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "webhook_receiver.py"
README = EXAMPLE.parents[1] / "README.md"
SECRET = "whsec-example-NEVER-PRINTED"


def kinds(db: Path, session_id: str) -> list[str]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT kind FROM transitions WHERE session_id = ? ORDER BY rowid", (session_id,))
        return [kind for (kind,) in rows]


async def test_the_receiver_stores_each_transition_once_and_refuses_what_it_cannot_trust(
    emu: Emulator, tmp_path: Path
) -> None:
    db = tmp_path / "transitions.sqlite3"
    receiver = await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLE), "--port", "0", "--db", str(db),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "SIGMA_WEBHOOK_SECRET": SECRET},
    )  # fmt: skip
    assert receiver.stdout is not None
    try:
        line = (await asyncio.wait_for(receiver.stdout.readline(), 20)).decode()
        match = re.fullmatch(r"receiving on (http://127\.0\.0\.1:\d+/sigma)\n", line)
        assert match, line
        url = match.group(1)
        channel_id, sid = live_session(emu)
        proc = await relay(emu, "--sink", url, "--session", sid, env={"SIGMA_WEBHOOK_SECRET": SECRET})
        run_course(emu, channel_id)
        status, _, err = await finish(proc)
        assert status == 0, err
        stored = kinds(db, sid)
        assert stored[-4:] == ["interrupted", "restored", "stopped", "ended"] and len(stored) == len(set(stored))

        # A relay that lost its cursors sends it all again, with the same delivery ids: stored once.
        status, _, err = await finish(await relay(emu, "--sink", url, "--session", sid,
                                                  env={"SIGMA_WEBHOOK_SECRET": SECRET}))  # fmt: skip
        assert status == 0, err
        assert kinds(db, sid) == stored

        async with aiohttp.ClientSession() as http:
            body = b'{"kind": "live"}'
            async with http.post(url, data=body, headers={"Sigma-Signature": sign(body, "wrong", timestamp=0)}) as r:
                assert r.status == 401, "a bad signature: the relay retries until the secret is fixed"
            headers = {"Sigma-Signature": sign(body, SECRET, timestamp=int(time.time()))}
            async with http.post(url, data=body, headers=headers) as r:
                assert r.status == 400, "not a transition: the relay dead-letters it"
    finally:
        receiver.send_signal(signal.SIGTERM)
        _, err_bytes = await asyncio.wait_for(receiver.communicate(), 15)
    assert receiver.returncode == 0, err_bytes.decode()
    assert SECRET.encode() not in err_bytes


async def test_without_a_secret_the_receiver_says_what_to_set(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SIGMA_WEBHOOK_SECRET"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLE), "--port", "0", "--db", str(tmp_path / "x.sqlite3"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 2 and "SIGMA_WEBHOOK_SECRET" in err.decode()


def test_the_readme_shows_the_receiver_as_the_example_has_it() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    shown = [block for block in blocks if "async def sigma_hook" in block]
    assert len(shown) == 1, "the README shows the receiver's handler"
    # Word for word, as it sits in the example (inside build_app, one level in).
    assert textwrap.indent(shown[0], "    ") in EXAMPLE.read_text()
