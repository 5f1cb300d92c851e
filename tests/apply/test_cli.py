"""``sigma-async apply`` as a user runs it, against the emulator: plans, re-runs, failures, a kill -9, bad files."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from collections import Counter
from pathlib import Path

import pytest

from sigma_async.apply import StateFile
from sigma_async.testing import Emulator, Fault

from ._support import environment, sent, sigma, start_sigma

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="sends POSIX signals")

S3_SECRET = "s3-secret-NEVER-PRINTED"
HEADER = """\
[defaults]
stop_timeout = 60
tags = ["stage"]

[defaults.destination_catchup]
access_key = "AK"
secret_key = "${S3_SECRET_KEY}"
bucket = "vod"
endpoint = "https://s3.example.com"
region = "hn"
"""
ENV = {"S3_SECRET_KEY": S3_SECRET}


def write(path: Path, *channels: tuple[str, bool], header: str = HEADER) -> Path:
    body = "".join(f'\n[[channel]]\nname = "{n}"\nrunning = {str(r).lower()}\n' for n, r in channels)
    path.write_text(header + body)
    return path


def on_server(emu: Emulator) -> Counter[str]:
    return Counter(c.name for c in emu.channels.values())


def running(emu: Emulator) -> set[str]:
    return {c.name for c in emu.channels.values() if c.current_session_id is not None}


def plan_lines(text: str) -> list[str]:
    return [" ".join(line.split()) for line in text.splitlines() if re.match(r"  [-+~!?] ", line)]


async def test_converge_re_run_edit_keep_and_prune(emu: Emulator, tmp_path: Path) -> None:
    first = [("a", True), ("b", False), ("c", True), ("d", False), ("e", True), ("f", False)]
    file = write(tmp_path / "channels.toml", *first)
    state = tmp_path / "channels.state.json"

    ran = await sigma(emu, "apply", file, env=ENV)
    assert ran.code == 0, ran.stderr
    assert plan_lines(ran.stdout) == [
        "+ create a then start", "+ create b", "+ create c then start", "+ create d", "+ create e then start",
        "+ create f",
    ]
    assert ran.stdout.index("Plan for") < ran.stdout.index("channel id"), "the plan comes before the results"
    assert ran.stdout.splitlines()[-1] == f"applied {file}: 6 created"
    assert on_server(emu) == Counter("abcdef") and running(emu) == {"a", "c", "e"}
    assert S3_SECRET not in ran.stdout + ran.stderr + state.read_text()

    emu.journal.clear()
    again = await sigma(emu, "apply", file, env=ENV)
    assert again.code == 0 and sent(emu) == []
    assert again.stdout.splitlines()[0] == f"No changes: 6 channels match {file}."

    # One stop, one start, one create; e (running) and f leave the file.
    write(file, ("a", False), ("b", True), ("c", True), ("d", False), ("g", False))
    before = state.read_bytes()
    emu.journal.clear()
    dry = await sigma(emu, "apply", file, "--dry-run", env=ENV)
    assert dry.code == 0 and plan_lines(dry.stdout) == ["~ stop a", "~ start b", "+ create g"]
    assert "Kept (in the state, not in the file; --prune deletes them): e, f" in dry.stdout
    assert dry.stdout.splitlines()[-1] == "dry run: nothing was sent"
    dry_json = await sigma(emu, "apply", file, "--dry-run", "--json", env=ENV)
    ids = {n: e.id for n, e in StateFile(state).state.channels.items()}
    assert dry_json.code == 0 and dry_json.lines() == [
        {"action": "stop", "name": "a", "channel_id": ids["a"], "ok": None, "error": None},
        {"action": "start", "name": "b", "channel_id": ids["b"], "ok": None, "error": None},
        {"action": "create", "name": "g", "channel_id": None, "ok": None, "error": None},
    ]
    assert "Plan for" in dry_json.stderr, "with --json the plan goes to stderr"
    assert sent(emu) == [] and state.read_bytes() == before

    edited = await sigma(emu, "apply", file, env=ENV)
    assert edited.code == 0 and plan_lines(edited.stdout) == ["~ stop a", "~ start b", "+ create g"]
    assert on_server(emu) == Counter("abcdefg") and running(emu) == {"b", "c", "e"}, "kept without --prune"

    emu.journal.clear()
    pruned = await sigma(emu, "apply", file, "--prune", "--json", env=ENV)
    assert pruned.code == 0 and plan_lines(pruned.stderr) == ["- delete e running: stopped first", "- delete f"]
    assert sorted((r["action"], r["name"], r["channel_id"], r["ok"]) for r in pruned.lines()) == [
        ("delete", "e", ids["e"], True), ("delete", "f", ids["f"], True),
    ]  # fmt: skip
    assert sent(emu).index(f"DELETE /api/livestream/channels/{ids['e']}/stop") < sent(emu).index(
        f"DELETE /api/livestream/channels/{ids['e']}"
    )
    assert on_server(emu) == Counter("abcdg")

    emu.journal.clear()
    assert (await sigma(emu, "apply", file, "--prune", env=ENV)).code == 0 and sent(emu) == []


async def test_a_rejected_channel_fails_alone_and_once_removed_nothing_more_is_sent(
    emu: Emulator, tmp_path: Path
) -> None:
    emu.faults.add("POST /channels", Fault(status=400, message="Tên kênh không hợp lệ"), times="always",
                   when=lambda request: request.json()["name"] == "bad")  # fmt: skip
    file = write(tmp_path / "c.toml", ("a", False), ("bad", True), ("c", True))
    ran = await sigma(emu, "apply", file, env=ENV)
    assert ran.code == 1
    (row,) = [line for line in ran.stdout.splitlines() if line.startswith("FAILED")]
    assert row.split()[:4] == ["FAILED", "create", "bad", "-"]
    assert row.endswith("HTTP 400: Tên kênh không hợp lệ (BadRequestError)")
    assert ran.stdout.splitlines()[-1] == f"applied {file}: 2 created; 1 failed"
    assert on_server(emu) == Counter("ac") and running(emu) == {"c"}

    as_json = await sigma(emu, "apply", file, "--json", env=ENV)
    assert as_json.code == 1 and as_json.lines() == [{
        "action": "create", "name": "bad", "channel_id": None, "ok": False,
        "error": "HTTP 400: Tên kênh không hợp lệ (BadRequestError)",
    }]  # fmt: skip

    write(file, ("a", False), ("c", True))
    emu.journal.clear()
    fixed = await sigma(emu, "apply", file, env=ENV)
    assert fixed.code == 0 and sent(emu) == [] and on_server(emu) == Counter("ac")


async def test_a_channel_deleted_in_the_console_is_created_again(emu: Emulator, tmp_path: Path) -> None:
    file = write(tmp_path / "c.toml", ("a", True), ("b", False))
    assert (await sigma(emu, "apply", file, env=ENV)).code == 0
    (old,) = [c.id for c in emu.channels.values() if c.name == "a"]
    emu.delete_channel(old)
    ran = await sigma(emu, "apply", file, "--json", env=ENV)
    assert ran.code == 0 and plan_lines(ran.stderr) == ["+ create a deleted outside apply: created again"]
    (line,) = ran.lines()
    assert (line["action"], line["name"], line["ok"]) == ("create", "a", True) and line["channel_id"] != old
    assert on_server(emu) == Counter("ab") and running(emu) == {"a"}


async def test_killed_mid_run_the_next_run_makes_no_duplicate_and_names_what_is_in_doubt(
    emu: Emulator, tmp_path: Path
) -> None:
    emu.faults.add("*", Fault(latency=0.05), times="always")
    names = [f"match-{i:02}" for i in range(60)]
    file = write(tmp_path / "c.toml", *[(n, False) for n in names])
    state = tmp_path / "c.state.json"

    proc = await start_sigma(emu, "apply", file, "--concurrency", "4", env=ENV)
    await emu.wait_for(lambda: len(emu.channels) >= 20, timeout=60)
    proc.send_signal(signal.SIGKILL)
    assert await proc.wait() == -signal.SIGKILL
    assert len(emu.channels) < 60, "killed part-way"
    known = StateFile(state).state  # a whole file, whatever the kill interrupted
    pending = known.in_doubt()
    assert len(known.channels) > 0 and len(pending) <= 4
    assert set(on_server(emu)) <= set(known.channels), "a channel exists only after its name was recorded"

    emu.journal.clear()
    ran = await sigma(emu, "apply", file, "--concurrency", "4", "--json", env=ENV)
    lines = ran.lines()
    in_doubt = sorted(line["name"] for line in lines if line["action"] == "in_doubt")
    assert in_doubt == sorted(pending) and ran.code == (1 if in_doubt else 0)
    assert all(line["ok"] for line in lines if line["action"] != "in_doubt"), lines
    assert all("--forget" in line["error"] for line in lines if line["action"] == "in_doubt")
    assert max(on_server(emu).values()) == 1, "no name twice on the server"
    assert set(on_server(emu)) | set(in_doubt) == set(names), "every channel created or in doubt"
    assert emu.journal.max_in_flight <= 4
    # Nothing the first run had recorded, created or pending, was sent again.
    assert emu.journal.count("POST /channels") == 60 - len(known.channels)

    # What a user does next: look in the console for each, then say what they found.
    found = {c.name: c.id for c in emu.channels.values()}
    resolve = [a for n in in_doubt for a in (("--adopt", f"{n}={found[n]}") if n in found else ("--forget", n))]
    settled = await sigma(emu, "apply", file, "--concurrency", "4", *resolve, env=ENV)
    assert settled.code == 0, settled.stdout + settled.stderr
    assert on_server(emu) == Counter(names)
    emu.journal.clear()
    assert (await sigma(emu, "apply", file, env=ENV)).code == 0 and sent(emu) == []


@pytest.mark.parametrize(
    ("body", "env", "message"),
    [
        ('[[channel]]\nname = "a"\n\n[[channel]]\nname = "b"\nstop_timout = 60\n', ENV,
         "c.toml:6: stop_timout: unknown key (did you mean stop_timeout?)"),
        ('[[channel]]\nname = "a"\n\n[[channel]]\nname = "a"\n', ENV,
         "c.toml:5: name: duplicate name 'a' (first at line 2)"),
        ('[[channel]]\nname = "a"\nrunning = "yes"\n', ENV, "c.toml:3: running: expected true or false, got a string"),
        (HEADER + '\n[[channel]]\nname = "a"\n', {},
         "c.toml:7: defaults.destination_catchup.secret_key: ${S3_SECRET_KEY} is not set in the environment"),
    ],
    ids=["unknown key", "duplicate name", "wrong type", "unset variable"],
)
async def test_a_bad_file_exits_2_naming_the_line_and_key_and_sends_nothing(
    emu: Emulator, tmp_path: Path, body: str, env: dict[str, str], message: str
) -> None:
    (tmp_path / "c.toml").write_text(body)
    ran = await sigma(emu, "apply", tmp_path / "c.toml", env=env)
    assert (ran.code, ran.stdout) == (2, "")
    assert ran.stderr.splitlines() == [f"error: {tmp_path}/{message}"]
    assert len(emu.journal) == 0 and not (tmp_path / "c.state.json").exists()


async def test_usage_mistakes_exit_2_before_anything_is_sent(emu: Emulator, tmp_path: Path) -> None:
    file = write(tmp_path / "c.toml", ("a", False))
    forget = await sigma(emu, "apply", file, "--forget", "nobody", env=ENV)
    assert (forget.code, forget.stderr.strip()) == (2, "error: cannot forget 'nobody': the state has no such name")
    adopt = await sigma(emu, "apply", file, "--adopt", "a", env=ENV)
    assert (adopt.code, adopt.stderr.strip()) == (2, "error: --adopt takes NAME=CHANNEL_ID, not 'a'")
    zero = await sigma(emu, "apply", file, "--concurrency", "0", env=ENV)
    assert zero.code == 2 and "must be at least 1" in zero.stderr
    assert len(emu.journal) == 0


async def test_a_second_apply_on_the_same_state_is_turned_away(emu: Emulator, tmp_path: Path) -> None:
    emu.faults.add("POST /channels", Fault(latency=30), times=1)  # holds the first run inside its lock
    file = write(tmp_path / "c.toml", ("a", False))
    first = await start_sigma(emu, "apply", file, env=ENV)
    await emu.wait_for(lambda: emu.journal.count("POST /channels") == 1, timeout=30)
    second = await sigma(emu, "apply", file, env=ENV)
    assert (second.code, second.stderr.strip()) == (
        1, f"error: another apply is running with the state file {tmp_path}/c.state.json"
    )
    first.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(first.communicate(), 30)
    assert first.returncode == 130, err
    assert json.loads((tmp_path / "c.state.json").read_text())["channels"]["a"]["pending"]


async def test_a_progress_bar_counts_the_items_on_a_terminal(emu: Emulator, tmp_path: Path) -> None:
    import pty  # POSIX only, like this module

    file = write(tmp_path / "c.toml", *[(f"c{i}", False) for i in range(6)])
    controller, terminal = pty.openpty()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sigma_async", "apply", str(file), stdout=asyncio.subprocess.PIPE, stderr=terminal,
        env=environment(emu, {**ENV, "TERM": "xterm-256color"}),
    )  # fmt: skip
    os.close(terminal)
    drained = asyncio.get_running_loop().run_in_executor(None, _read_until_closed, controller)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    shown = (await asyncio.wait_for(drained, 30)).decode(errors="replace")
    assert proc.returncode == 0, shown
    assert re.search(r"applying.*6/6", shown), shown
    assert "applying" not in out.decode(), "the bar is on stderr only"


def _read_until_closed(fd: int) -> bytes:
    chunks = []
    try:
        while chunk := os.read(fd, 4096):
            chunks.append(chunk)
    except OSError:  # EIO: the other end has closed
        pass
    finally:
        os.close(fd)
    return b"".join(chunks)


ROOT = Path(__file__).resolve().parent.parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


async def test_the_example_file_does_what_the_readme_shows(emu: Emulator, tmp_path: Path) -> None:
    (tmp_path / "examples").mkdir()
    example = (ROOT / "examples" / "channels.toml").read_text()
    (tmp_path / "examples" / "channels.toml").write_text(example)
    first = await sigma(emu, "apply", "examples/channels.toml", env=ENV, cwd=tmp_path)
    assert first.code == 0, first.stderr
    shown = README[README.index("$ sigma-async apply examples/channels.toml\n"):]
    expected = shown[: shown.index("    action")].splitlines()[1:]
    assert first.stdout.splitlines()[: len(expected)] == expected
    assert first.stdout.splitlines()[-1] in README
    assert on_server(emu) == Counter(["main-stage", "side-stage", "interviews"])
    assert running(emu) == {"main-stage", "side-stage"}
    again = await sigma(emu, "apply", "examples/channels.toml", env=ENV, cwd=tmp_path)
    assert again.code == 0 and again.stdout.splitlines()[0] in README

    # The README's bad file: the secret unset, the third channel renamed side-stage, its stop_timeout misspelt.
    bad = example.replace("stop_timeout = 300", "stop_timout = 300")
    bad = bad.replace('name = "interviews"', 'name = "side-stage"')
    (tmp_path / "examples" / "channels.toml").write_text(bad)
    broken = await sigma(emu, "apply", "examples/channels.toml", cwd=tmp_path)
    assert broken.code == 2 and broken.stderr.splitlines() == [
        line.strip() for line in README.splitlines() if line.strip().startswith("error: examples/channels.toml:")
    ]
