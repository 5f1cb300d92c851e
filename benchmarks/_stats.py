"""Small statistics for noisy machines: medians, percentiles, paired ratios, and number formatting."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import TypeVar

__all__ = ["fmt_bytes", "fmt_rate", "fmt_ratio", "fmt_seconds", "median", "paired_ratio", "percentile", "rotate"]

T = TypeVar("T")


def median(values: Sequence[float]) -> float:
    """The median, or NaN for no values (a section that could not measure still prints)."""
    return statistics.median(values) if values else math.nan


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation between closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def paired_ratio(numerators: Sequence[float], denominators: Sequence[float]) -> float:
    """Median of per-round ratios. Rounds are interleaved, so a noisy moment hits both sides of one pair."""
    pairs = [a / b for a, b in zip(numerators, denominators, strict=False) if b]
    return median(pairs)


def rotate(items: Sequence[T], by: int) -> list[T]:
    """``items`` started at position ``by``: each round starts with a different contender."""
    if not items:
        return []
    k = by % len(items)
    return [*items[k:], *items[:k]]


def fmt_seconds(seconds: float) -> str:
    if math.isnan(seconds):
        return "n/a"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def fmt_rate(per_second: float, unit: str = "/s") -> str:
    return "n/a" if math.isnan(per_second) else f"{per_second:,.0f}{unit}"


def fmt_ratio(ratio: float) -> str:
    if math.isnan(ratio):
        return "n/a"
    return f"{ratio:.3f}x" if ratio < 10 else f"{ratio:.1f}x"


def fmt_bytes(size: float) -> str:
    if math.isnan(size):
        return "n/a"
    if abs(size) < 1024:
        return f"{size:.0f} B"
    if abs(size) < 1024 * 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size / 1024 / 1024:.1f} MiB"
