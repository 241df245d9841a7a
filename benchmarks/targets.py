"""The issue's targets, declared once, checked against a results dict."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Target:
    """One requirement: the value at ``key`` (a dotted path into the results) compared with ``limit``."""

    name: str
    key: str
    op: str  # ">=" or "<="
    limit: float
    unit: str = ""


TARGETS = (
    Target("pipeline throughput, headless, --output and --events", "variants.pipeline.fps", ">=", 150, "frames/s"),
    Target("pipeline throughput, later target", "variants.pipeline.fps", ">=", 300, "frames/s"),
    Target("pipeline / sequential seeds-style baseline", "ratios.pipeline_over_seeds", ">=", 3.0, "x"),
    Target("live at the clip's rate: end-to-end p99", "live.latency_ms.total.p99", "<=", 25.0, "ms"),
    Target("live at the clip's rate: dropped frames", "live.drops", "<=", 0, "frames"),
    Target("memory of all processes together (peak PSS)", "variants.pipeline.resources.total.mem_peak_mb",
           "<=", 200.0, "MB"),
    Target("command start to first processed frame (median)", "startup.median_s", "<=", 1.0, "s"),
    Target("face recall vs full-resolution Haar (frames with a face)", "variants.pipeline.recall.recall",
           ">=", 1.0, ""),
)


def lookup(results: dict[str, Any], key: str) -> float:
    """The number at a dotted path, nan when any part is missing."""
    value: Any = results
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return math.nan
        value = value[part]
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def met(value: float, op: str, limit: float) -> bool | None:
    """Whether a value meets a limit; None when it was not measured."""
    if math.isnan(value):
        return None
    return value >= limit if op == ">=" else value <= limit


def evaluate(results: dict[str, Any], targets: tuple[Target, ...] = TARGETS) -> list[dict[str, Any]]:
    rows = []
    for target in targets:
        value = lookup(results, target.key)
        required = f"{target.op} {target.limit:g} {target.unit}".strip()
        rows.append({"name": target.name, "key": target.key, "target": required, "unit": target.unit,
                     "measured": None if math.isnan(value) else value, "met": met(value, target.op, target.limit)})
    return rows
