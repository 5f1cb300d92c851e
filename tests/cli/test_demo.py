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
    # The HLS output freezes while the API says live: a stall naming 720p, then its resume, before the signal drops.
    assert kinds.index("stable") < kinds.index("playback_stalled") < kinds.index("playback_resumed") \
        < kinds.index("interrupted"), kinds
    assert re.search(r"playback_stalled\s.*renditions: 720p \(stale\)", out)
    assert re.search(r"^\s+720p\s+\d+\s+\d+ s\s+stalled$", out, re.M), out  # the probe's table at that moment
    for kind in ("initializing", "live", "stable", "interrupted", "restored", "stopped", "ended"):
        assert re.search(rf"^\s+\+\d\d:\d\d  {kind}\b", out, re.M), (kind, out)
    assert re.search(rf"https://s3\.example\.com/demo-vod/sigma-livestream/{UUID}/catchup/master-catchup\.m3u8", out)
    assert "deleted 4 channels" in out and "demo-secret-key" not in out

    as_json = json_lines(ok(run(None, "demo", "--channels", "2", "--json", env=clean_env(), timeout=60)).stdout)
    *transitions, summary = as_json
    assert [t["kind"] for t in transitions][-1] == "ended" and "live" in [t["kind"] for t in transitions]
    stalls = [t for t in transitions if t["kind"] == "playback_stalled"]
    assert [(t["renditions"], t["source"], t["id"]) for t in stalls] == [
        (["720p"], "playback", f"{summary['sessionId']}:playback_stalled:1")
    ]
    assert summary["catchupPlaylistUrl"].endswith(f"/{summary['sessionId']}/catchup/master-catchup.m3u8")
    assert summary["deleted"] == 2
