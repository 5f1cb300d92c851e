"""Results as a plain-text table or a JSON document, and a description of the machine they were measured on."""

from __future__ import annotations

import math
import os
import platform
import sys
from dataclasses import asdict, dataclass, field
from importlib import metadata
from typing import Any

__all__ = ["MET", "NOT_MET", "Row", "Section", "machine", "render_json", "render_table", "status_for"]

MET = "met"
NOT_MET = "NOT MET"


@dataclass
class Row:
    """One measurement: the SDK's figure, what it is compared with, the ratio, and the target it must meet."""

    measurement: str
    value: str
    baseline: str = ""
    ratio: str = ""
    target: str = ""
    status: str = ""


@dataclass
class Section:
    """The result of one benchmark: table rows, notes for the reader, and the raw figures for ``--json``."""

    name: str
    title: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def add(self, *args: str, **kw: str) -> Row:
        row = Row(*args, **kw)
        self.rows.append(row)
        return row


def status_for(value: float, *, at_least: float | None = None, below: float | None = None) -> str:
    """``met`` / ``NOT MET`` for a target, or ``n/a`` when the figure could not be measured."""
    if math.isnan(value):
        return "n/a"
    if at_least is not None and value < at_least:
        return NOT_MET
    if below is not None and value >= below:
        return NOT_MET
    return MET


_HEADERS = ("Measurement", "sigma-async", "Baseline", "Ratio", "Target", "Status")


def render_table(sections: list[Section], info: dict[str, Any]) -> str:
    """Every section as one aligned plain-text table, with its notes under it."""
    lines = [
        f"sigma-async benchmarks — {info['cpu']} x {info['nproc']}, Python {info['python']}, "
        f"load {info['load_at_start']}",
        "Figures are medians of interleaved rounds; ratios are medians of per-round ratios.",
        "",
    ]
    for section in sections:
        cells = [_HEADERS, *((r.measurement, r.value, r.baseline, r.ratio, r.target, r.status) for r in section.rows)]
        widths = [max(len(row[i]) for row in cells) for i in range(len(_HEADERS))]
        rule = "  ".join("-" * w for w in widths)
        lines += [f"== {section.title} ==", rule]
        for i, row in enumerate(cells):
            lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
            if i == 0:
                lines.append(rule)
        lines.append(rule)
        lines += [f"  * {note}" for note in section.notes]
        lines.append("")
    statuses = [r.status for s in sections for r in s.rows if r.status]
    lines.append(f"Targets: {statuses.count(MET)} met, {statuses.count(NOT_MET)} not met, "
                 f"{len(statuses) - statuses.count(MET) - statuses.count(NOT_MET)} not measurable.")
    return "\n".join(lines)


def render_json(sections: list[Section], info: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    statuses = [r.status for s in sections for r in s.rows if r.status]
    return {
        "machine": info,
        "config": config,
        "sections": {
            s.name: {"title": s.title, "rows": [asdict(r) for r in s.rows], "notes": s.notes, "data": s.data}
            for s in sections
        },
        "targets": {"met": statuses.count(MET), "not_met": statuses.count(NOT_MET)},
    }


def machine() -> dict[str, Any]:
    """CPU model, core count, Python, load, and the versions of every library measured."""
    versions: dict[str, str | None] = {}
    for dist in ("sigma-async", "aiohttp", "msgspec", "httpx", "pydantic", "uvloop", "yarl", "multidict"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    try:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "n/a"
    return {
        "cpu": _cpu_model(),
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "platform": platform.platform(),
        "load_at_start": load,
        "versions": versions,
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"
