"""Declarative provisioning: N channels through ``apply`` against the same N through ``create_many``.

The emulator runs as its own process (``python -m benchmarks.apply serve LATENCY``: the emulator, each answer held
LATENCY seconds). Each round, in rotated order: the library's ``apply()`` into a fresh state file,
``channels.create_many`` of the same specs, and the two commands a user types (``sigma-async apply FILE`` and
``sigma-async channels create-many FILE``), process start included. Then ``apply()`` again on the state just
written, which reads every channel and changes nothing. Every spec records to S3 with its secret from the
environment, so ``apply`` pays for its secret fingerprint too. The same again against a server that takes
``latency`` to answer, as a real one does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from sigma_async import ChannelCreate, SigmaClient
from sigma_async.apply import DesiredChannel, apply, load_desired
from sigma_async.testing import Emulator, Fault
from sigma_async.testing._standalone import serve

from ._report import Section
from ._server import standalone_emulator
from ._stats import fmt_ratio, fmt_seconds, median, paired_ratio, rotate

__all__ = ["ApplyBenchConfig", "run"]

S3_SECRET = "bench-s3-secret-key-0123456789abcdef"
CONTENDERS = ("apply", "create_many", "cli apply", "cli create-many")


@dataclass(frozen=True)
class ApplyBenchConfig:
    channels: int = 500
    concurrency: int = 16
    rounds: int = 5
    #: Seconds each answer is held by the server in the second run (the first: none, the emulator as it is).
    latency: float = 0.02


def run(config: ApplyBenchConfig) -> Section:
    plain = _measure(config, 0.0, CONTENDERS)
    slow = _measure(config, config.latency, CONTENDERS[:2])
    sec = Section(
        "apply", f"Apply: {config.channels} channels at concurrency {config.concurrency} against the emulator"
    )
    _rows(sec, plain, "")
    _rows(sec, slow, f", server latency {fmt_seconds(config.latency)}")
    sec.data = {"plain": plain, "latency": slow, "config": vars(config)}
    failures = {f"{name}{'' if run is plain else ' (latency)'}": n
                for run in (plain, slow) for name, n in run["failures"].items()}  # fmt: skip
    sec.notes.append(
        f"{config.rounds} rounds, contenders rotated each round, median wall; ratios are medians of per-round "
        "ratios. apply() writes its state file (temporary file, fsync, rename) before each create is sent, commits "
        "in flight sharing a write; the commands include starting Python. Failed items: "
        + ", ".join(f"{name} {n}" for name, n in failures.items())
    )
    return sec


def _rows(sec: Section, measured: dict[str, dict[str, Any]], suffix: str) -> None:
    walls = measured["walls"]
    ours, bulk = median(walls["apply"]), median(walls["create_many"])
    sec.add(f"apply() wall time{suffix}", fmt_seconds(ours), f"create_many {fmt_seconds(bulk)}",
            fmt_ratio(paired_ratio(walls["apply"], walls["create_many"])))  # fmt: skip
    if walls.get("cli apply"):
        cli, cli_bulk = median(walls["cli apply"]), median(walls["cli create-many"])
        sec.add(f"sigma-async apply (process){suffix}", fmt_seconds(cli),
                f"channels create-many {fmt_seconds(cli_bulk)}",
                fmt_ratio(paired_ratio(walls["cli apply"], walls["cli create-many"])))  # fmt: skip
    again = median(walls["re-apply"])
    sec.add(f"apply() again, no change{suffix}", fmt_seconds(again), f"first apply {fmt_seconds(ours)}",
            fmt_ratio(paired_ratio(walls["re-apply"], walls["apply"])))  # fmt: skip


def _measure(config: ApplyBenchConfig, latency: float, contenders: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    walls: dict[str, list[float]] = {name: [] for name in (*contenders, "re-apply")}
    failures: dict[str, int] = dict.fromkeys(walls, 0)
    with tempfile.TemporaryDirectory(prefix="sigma-apply-bench-") as tmp, _emulator(latency) as (url, creds):
        files = _write_files(Path(tmp), config.channels)
        env = {**os.environ, "SIGMA_BASE_URL": url, "SIGMA_USERNAME": creds["username"],
               "SIGMA_SECRET_KEY": creds["secret_key"], "SIGMA_APP_ID": creds["app_id"],
               "S3_SECRET_KEY": S3_SECRET, "SIGMA_S3_SECRET_KEY": S3_SECRET}  # fmt: skip
        desired = load_desired(files["toml"], env=env)
        for round_no in range(config.rounds):
            state = Path(tmp) / f"round-{round_no}.state.json"
            for name in rotate(list(contenders), round_no):
                if name.startswith("cli"):
                    wall, failed = _command(name, files, Path(tmp) / f"cli-{round_no}.state.json", config, env)
                else:
                    wall, failed = anyio.run(_library, name, desired, state, config, url, creds)
                walls[name].append(wall)
                failures[name] += failed
            wall, failed = anyio.run(_library, "re-apply", desired, state, config, url, creds)
            walls["re-apply"].append(wall)
            failures["re-apply"] += failed

    return {"walls": walls, "failures": failures}


async def _library(
    name: str, desired: list[DesiredChannel], state: Path, config: ApplyBenchConfig, url: str, creds: dict[str, str]
) -> tuple[float, int]:
    async with SigmaClient(base_url=url, **creds) as client:
        # Connections opened before timing, as in the bulk section.
        await client.channels.create_many([ChannelCreate(name="warm")] * config.concurrency,
                                          concurrency=config.concurrency)  # fmt: skip
        start = time.perf_counter()
        if name == "create_many":
            results = await client.channels.create_many([d.spec for d in desired], concurrency=config.concurrency)
            return time.perf_counter() - start, sum(isinstance(r, Exception) for r in results)
        report = await apply(client, desired, state=state, concurrency=config.concurrency)
        wall = time.perf_counter() - start
    expected_changes = 0 if name == "re-apply" else len(desired)
    done = sum(1 for r in report.results if r.ok)
    return wall, (len(report.results) - done) + abs(expected_changes - len(report.results))


def _command(
    name: str, files: dict[str, Path], state: Path, config: ApplyBenchConfig, env: dict[str, str]
) -> tuple[float, int]:
    if name == "cli apply":
        args = ["apply", str(files["toml"]), "--state", str(state)]
    else:
        args = ["channels", "create-many", str(files["jsonl"])]
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "sigma_async", "--json", *args, "--concurrency", str(config.concurrency)],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    wall = time.perf_counter() - start
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    return wall, sum(not line.get("ok") for line in lines) + (done.returncode != 0)


def _write_files(directory: Path, count: int) -> dict[str, Path]:
    """The same channels as a TOML file for apply and as JSON lines for create-many."""
    toml = directory / "channels.toml"
    header = (
        '[defaults]\nstop_timeout = 60\ntags = ["bench"]\n\n[defaults.destination_catchup]\naccess_key = "AK"\n'
        'secret_key = "${S3_SECRET_KEY}"\nbucket = "vod"\nendpoint = "https://s3.example.com"\nregion = "hn"\n'
    )
    toml.write_text(header + "".join(f'\n[[channel]]\nname = "bench-{i:04}"\n' for i in range(count)))
    jsonl = directory / "channels.jsonl"
    dest = {"access_key": "AK", "bucket": "vod", "endpoint": "https://s3.example.com", "region": "hn"}
    jsonl.write_text("".join(
        json.dumps({"name": f"bench-{i:04}", "stop_timeout": 60, "tags": ["bench"], "destination_catchup": dest}) + "\n"
        for i in range(count)
    ))  # fmt: skip
    return {"toml": toml, "jsonl": jsonl}


def _emulator(latency: float) -> AbstractContextManager[tuple[str, dict[str, str]]]:
    """The emulator in its own process; yields its URL and credentials from its ready line."""
    return standalone_emulator(["-m", "benchmarks.apply", "serve", str(latency)])


async def _serve(latency: float) -> None:
    emulator = Emulator()
    if latency:
        emulator.faults.add("*", Fault(latency=latency), times="always")
    await serve(emulator)


if __name__ == "__main__":
    if sys.argv[1:2] != ["serve"] or len(sys.argv) != 3:
        sys.exit("usage: python -m benchmarks.apply serve LATENCY_SECONDS")
    anyio.run(_serve, float(sys.argv[2]))
