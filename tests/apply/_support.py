"""Running ``sigma-async apply`` as a user runs it: a subprocess talking to an emulator served by the test."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sigma_async.testing import Emulator

__all__ = ["Ran", "json_lines", "sent", "sigma", "start_sigma"]


@dataclass
class Ran:
    code: int
    stdout: str
    stderr: str

    def lines(self) -> list[dict[str, Any]]:
        return json_lines(self.stdout)


def environment(emu: Emulator, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGMA_")}
    env.update(
        PYTHONIOENCODING="utf-8", COLUMNS="200", SIGMA_BASE_URL=emu.url, SIGMA_USERNAME=emu.username,
        SIGMA_SECRET_KEY=emu.secret_key, SIGMA_APP_ID=emu.app_id, **(extra or {}),
    )  # fmt: skip
    return env


async def start_sigma(
    emu: Emulator, *args: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sigma_async", *map(str, args), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=environment(emu, env), cwd=cwd,
    )  # fmt: skip


async def sigma(
    emu: Emulator, *args: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 60
) -> Ran:
    """Run the command to its end while this event loop serves the emulator."""
    proc = await start_sigma(emu, *args, env=env, cwd=cwd)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"sigma-async {' '.join(map(str, args))} still running after {timeout}s") from None
    assert proc.returncode is not None
    ran = Ran(proc.returncode, out.decode(), err.decode())
    assert "Traceback" not in ran.stderr, ran.stderr
    return ran


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def sent(emu: Emulator) -> list[str]:
    """Every request that could change something, as ``METHOD /path``."""
    return [f"{e.method} {e.path}" for e in emu.journal.entries() if e.method != "GET"]
