"""The benchmark harness runs end to end at its smallest size and reports every section (figures not checked)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("calls", "loops", "decode", "bulk", "watch")

pytest.importorskip("httpx", reason="the benchmarks compare against httpx (pip install sigma-async[bench])")
pytest.importorskip("pydantic", reason="the benchmarks compare against pydantic (pip install sigma-async[bench])")


def test_smoke_run_reports_every_section() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--json"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    document = json.loads(done.stdout)
    assert set(document["sections"]) == set(SECTIONS)
    for name in SECTIONS:
        section = document["sections"][name]
        assert section["rows"], f"section {name} printed no rows"
        # Every row names what it measured and shows a figure, measured or not.
        assert all(row["measurement"] and row["value"] for row in section["rows"])
    assert {"cpu", "nproc", "python"} <= set(document["machine"])


def test_table_output_names_every_section() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--only", "decode,bulk"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Decoding a 100-session page" in done.stdout
    assert "Bulk:" in done.stdout
    assert "Targets:" in done.stdout
