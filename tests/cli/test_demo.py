"""``sigma-async demo``: the tour a newcomer runs first."""

from __future__ import annotations

import re
import time

from ._support import UUID, clean_env, json_lines, ok, run


def test_demo_runs_a_session_to_its_end_in_seconds() -> None:
    began = time.monotonic()
    result = ok(run(None, "demo", "--channels", "4", env=clean_env(), timeout=60))
    assert time.monotonic() - began < 30
    out = result.stdout
    # "live" once, when the simulated encoder's stream goes on air, before its signal's own transitions.
    assert len(re.findall(r"^\s+\+\d\d:\d\d  live\b", out, re.M)) == 1, out
    kinds = re.findall(r"^\s+\+\d\d:\d\d  (\w+)", out, re.M)
    assert kinds.index("live") < kinds.index("stable") < kinds.index("interrupted"), kinds
    for kind in ("initializing", "live", "stable", "interrupted", "restored", "stopped", "ended"):
        assert re.search(rf"^\s+\+\d\d:\d\d  {kind}\b", out, re.M), (kind, out)
    assert re.search(rf"https://s3\.example\.com/demo-vod/sigma-livestream/{UUID}/catchup/master-catchup\.m3u8", out)
    assert "deleted 4 channels" in out and "demo-secret-key" not in out

    as_json = json_lines(ok(run(None, "demo", "--channels", "2", "--json", env=clean_env(), timeout=60)).stdout)
    *transitions, summary = as_json
    assert [t["kind"] for t in transitions][-1] == "ended" and "live" in [t["kind"] for t in transitions]
    assert summary["catchupPlaylistUrl"].endswith(f"/{summary['sessionId']}/catchup/master-catchup.m3u8")
    assert summary["deleted"] == 2
