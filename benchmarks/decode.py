"""Decoding one 100-session page: the SDK's msgspec decoder vs ``json.loads`` to dicts vs pydantic."""

from __future__ import annotations

import json
import timeit
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sigma_async._protocol import SESSION_PAGE_DECODER

from ._payloads import SESSION_PAGE_SIZE, session_page_body
from ._report import Section
from ._stats import fmt_bytes, fmt_ratio, fmt_seconds, median, paired_ratio, rotate

__all__ = ["DecodeConfig", "run"]


@dataclass(frozen=True)
class DecodeConfig:
    rounds: int
    #: Seconds each timing should take; the repeat count is calibrated to it.
    target_seconds: float = 0.05


def _decoders() -> dict[str, Callable[[bytes], Any]]:
    from ._pydantic_models import SessionPageModel

    return {
        "msgspec": SESSION_PAGE_DECODER.decode,
        "json.loads": json.loads,
        "pydantic": SessionPageModel.model_validate_json,
    }


def run(config: DecodeConfig) -> Section:
    """timeit-style: per round, each decoder decodes the same bytes ``number`` times; medians across rounds."""
    body = session_page_body()
    decoders = _decoders()
    # Every decoder must read the page the same way, or the race is not fair.
    assert len(SESSION_PAGE_DECODER.decode(body).data) == len(decoders["pydantic"](body).data) == SESSION_PAGE_SIZE
    timers = {name: timeit.Timer("decode(body)", globals={"decode": fn, "body": body}) for name, fn in decoders.items()}
    numbers = {name: _calibrate(timer, config.target_seconds) for name, timer in timers.items()}
    per_page: dict[str, list[float]] = {name: [] for name in decoders}
    for round_no in range(config.rounds):
        for name in rotate(list(decoders), round_no):
            per_page[name].append(timers[name].timeit(numbers[name]) / numbers[name])

    sec = Section("decode", f"Decoding a {SESSION_PAGE_SIZE}-session page ({fmt_bytes(len(body))}), in-process")
    ours = median(per_page["msgspec"])
    for name in ("json.loads", "pydantic"):
        speedup = paired_ratio(per_page[name], per_page["msgspec"])
        sec.add(
            f"decode page vs {name}", fmt_seconds(ours), f"{name} {fmt_seconds(median(per_page[name]))}",
            f"{fmt_ratio(speedup)} faster",
        )
    sec.data = {
        "body_bytes": len(body),
        "seconds_per_page": per_page,
        "median_seconds_per_page": {name: median(v) for name, v in per_page.items()},
        "numbers": numbers,
    }
    sec.notes += [
        "msgspec decodes into typed Structs (timestamps to datetime); json.loads only builds dicts and strings; "
        "pydantic model_validate_json builds the same typed models as the SDK.",
        f"{config.rounds} rounds, decoders interleaved; each figure is per page.",
    ]
    return sec


def _calibrate(timer: timeit.Timer, target: float) -> int:
    number, elapsed = timer.autorange()
    return max(1, round(number * target / elapsed)) if elapsed else number
