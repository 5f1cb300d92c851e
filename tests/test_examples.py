"""Each example runs against the emulator, as a user would run it against the real API."""

from __future__ import annotations

import asyncio
import importlib.util
import io
import json
import sys
from pathlib import Path
from types import ModuleType

from sigma_async.testing import Emulator

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def test_monitor_service_logs_every_transition_as_json_lines() -> None:
    example = load("monitor_service")
    async with Emulator(manual_clock=True) as emu, emu.client() as client:
        channels = [emu.create_channel(f"c{i}") for i in range(3)]
        out = io.StringIO()
        stop = asyncio.Event()
        service = asyncio.create_task(example.run(client, [c.id for c in channels], out, interval=0.02, stop=stop))
        for channel in channels:
            emu.start_channel(channel.id)
            emu.connect_publisher(channel.id)
        await emu.wait_for(lambda: out.getvalue().count('"kind":"stable"') == 3)
        emu.stop_channel(channels[0].id)
        await emu.wait_for(lambda: '"kind":"ended"' in out.getvalue())
        stop.set()
        logged = await asyncio.wait_for(service, 5)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert logged == len(lines) >= 3 * 3 + 2
    by_channel = {c.id: [line["kind"] for line in lines if line["channel_id"] == c.id] for c in channels}
    assert by_channel[channels[0].id] == ["initializing", "started", "stable", "stopped", "ended"]
    assert by_channel[channels[1].id] == ["initializing", "started", "stable"]
