"""Relay replicas at scale: ``python -m benchmarks --only replicas``.

Three ``sigma-async relay`` processes share one watch list of ``sessions`` sessions through leases in one
nats-server's KV bucket, polling a standalone emulator process. Two start; once every session's first records
are on the stream, a third joins; then one is killed with SIGKILL. Measured: records per second while the
first records of every session go out, each replica's share (from the heartbeats in the bucket), and the time
from a join or a kill until the shares are balanced again. A kill is bounded below by the lease TTL: its
leases are taken only once they have expired.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from ._report import Section, status_for

__all__ = ["ReplicasConfig", "run"]

READY = re.compile(r"listening on (http://127\.0\.0\.1:\d+) username=(\S+) app_id=(\S+) secret_key=(\S+)")


@dataclass(frozen=True)
class ReplicasConfig:
    sessions: int = 3000
    replicas: int = 3
    interval: float = 5.0
    lease_ttl: float = 6.0
    timeout: float = 300.0


def run(config: ReplicasConfig) -> Section:
    """Run the scenario once and report it."""
    figures = anyio.run(_measure, config)
    return _section(config, figures)


async def _measure(config: ReplicasConfig) -> dict[str, Any]:
    import nats
    from nats.js.api import StorageType

    from sigma_async import ChannelCreate, SigmaClient
    from sigma_async.testing._nats import NatsServer

    tmp = Path(tempfile.mkdtemp(prefix="sigma-replicas-"))
    emulator = await anyio.open_process(
        [sys.executable, "-m", "sigma_async", "emulator", "--port", "0", "--auto-publish", "1"], stdout=subprocess.PIPE
    )
    relays: dict[str, Any] = {}
    try:
        async with NatsServer() as server:
            assert emulator.stdout is not None
            line = b""
            while not line.endswith(b"\n"):
                line += await emulator.stdout.receive(1)
            ready = READY.search(line.decode())
            assert ready, line
            url, username, app_id, secret = ready.groups()
            env = {
                **os.environ,
                "SIGMA_BASE_URL": url,
                "SIGMA_USERNAME": username,
                "SIGMA_APP_ID": app_id,
                "SIGMA_SECRET_KEY": secret,
            }
            async with SigmaClient(username=username, secret_key=secret, app_id=app_id, base_url=url) as client:
                specs = [ChannelCreate(name=f"bench-{i}") for i in range(config.sessions)]
                created = await client.channels.create_many(specs, concurrency=50)
                channels = [c.id for c in created if not isinstance(c, Exception)]
                await client.channels.start_many(channels, concurrency=50)
                # --auto-publish brings every session live a second after its start, with no control calls.
                sessions = [s for s in [(await client.channels.get(c)).current_session_id for c in channels] if s]

            nc = await nats.connect(server.url)
            js = nc.jetstream()
            await js.add_stream(name="SIGMA", subjects=["sigma.>"], storage=StorageType.FILE, duplicate_window=120)
            kv = await js.create_key_value(bucket="relay", history=1)
            arrivals: list[float] = []
            first_of: dict[str, float] = {}
            every_session_seen = anyio.Event()

            async def on_record(msg: Any) -> None:
                now = time.monotonic()
                arrivals.append(now)
                first_of.setdefault(json.loads(msg.data)["session_id"], now)
                if len(first_of) == len(sessions):
                    every_session_seen.set()

            await js.subscribe("sigma.>", stream="SIGMA", ordered_consumer=True, cb=on_record)
            (tmp / "relay.toml").write_text(
                f'sink = "{server.url}/SIGMA"\nstore = "{server.url}/relay"\nsessions = {json.dumps(sessions)}\n'
                f"interval = {config.interval}\nlease_ttl = {config.lease_ttl}\n"
            )

            async def start(name: str) -> None:
                with (tmp / f"{name}.log").open("wb") as log:
                    relays[name] = await anyio.open_process(
                        [
                            sys.executable,
                            "-m",
                            "sigma_async",
                            "relay",
                            "--config",
                            str(tmp / "relay.toml"),
                            "--replica",
                            name,
                        ],
                        stdout=log,
                        stderr=log,
                        env=env,
                    )

            async def shares() -> dict[str, int]:
                found: dict[str, int] = {}
                watcher = await kv.watch("replicas.>")
                async for entry in watcher:
                    if entry is None:
                        break
                    if entry.value and entry.operation is None:
                        beat = json.loads(entry.value)
                        found[beat["replica"]] = beat["held"]
                    if entry.delta == 0:
                        break
                await watcher.stop()
                return found

            async def until_balanced(names: list[str]) -> tuple[float, dict[str, int]]:
                began = time.monotonic()
                fair = math.ceil(len(sessions) / len(names))
                with anyio.fail_after(config.timeout):
                    while True:
                        now = await shares()
                        held = {n: now.get(n, 0) for n in names}
                        if sum(held.values()) == len(sessions) and max(held.values()) <= fair:
                            return time.monotonic() - began, held
                        await anyio.sleep(0.1)

            names = [f"relay-{i + 1}" for i in range(config.replicas)]
            began = time.monotonic()
            for name in names[:-1]:
                await start(name)
            with anyio.fail_after(config.timeout):
                await every_session_seen.wait()
            caught_up = time.monotonic() - began
            records = len(arrivals)
            rate = records / max(1e-9, max(arrivals) - min(arrivals))

            await start(names[-1])
            join_seconds, joined = await until_balanced(names)
            relays[names[-1]].send_signal(signal.SIGKILL)
            kill_seconds, _ = await until_balanced(names[:-1])
            await nc.close()
            return {
                "sessions": len(sessions),
                "records": records,
                "records_per_s": rate,
                "caught_up_s": caught_up,
                "shares": joined,
                "join_rebalance_s": join_seconds,
                "kill_rebalance_s": kill_seconds,
            }
    finally:
        for proc in relays.values():
            if proc.returncode is None:
                proc.terminate()
        for proc in relays.values():
            with anyio.move_on_after(30):
                await proc.wait()
            await proc.aclose()
        emulator.terminate()
        await emulator.wait()
        await emulator.aclose()


def _section(config: ReplicasConfig, f: dict[str, Any]) -> Section:
    sec = Section(
        "replicas",
        f"Relay replicas: {config.replicas} processes, {f['sessions']} sessions, lease TTL {config.lease_ttl:g} s, "
        f"interval {config.interval:g} s",
        data={"config": config.__dict__, **f},
    )
    shares = ", ".join(f"{n} {h}" for n, h in sorted(f["shares"].items()))
    fair = math.ceil(f["sessions"] / config.replicas)
    sec.add(
        "share per replica after the join",
        shares,
        target=f"each <= {fair}",
        status=status_for(max(f["shares"].values()), below=fair + 1),
    )
    sec.add("rebalance after a join", f"{f['join_rebalance_s']:.1f} s", target="within a few lease ticks")
    bound = config.lease_ttl + 2 * config.interval
    sec.add(
        "rebalance after a kill -9",
        f"{f['kill_rebalance_s']:.1f} s",
        target=f"< TTL + 2 intervals = {bound:g} s",
        status=status_for(f["kill_rebalance_s"], below=bound),
    )
    sec.add(
        "records/s while every session's first records go out", f"{f['records_per_s']:.0f} ({f['records']} records)"
    )
    sec.add("every session's first records on the stream", f"{f['caught_up_s']:.1f} s after two replicas started")
    sec.notes.append(
        "Shares come from the replicas' heartbeats in the KV bucket; one nats-server on loopback, "
        "the emulator and every relay on the same machine."
    )
    return sec
