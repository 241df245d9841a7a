"""Per-stage latency statistics of a run in fixed memory: counts, means, extremes and percentiles from a histogram."""

from __future__ import annotations

import math

import numpy as np

LOWEST_MS = 1e-3  # the histogram's range; values outside it land in its first or last bin
HIGHEST_MS = 1e5
BINS_PER_DECADE = 50  # bins 4.7% wide: a percentile is within 2.3% of the true value
BINS = int(math.log10(HIGHEST_MS / LOWEST_MS) * BINS_PER_DECADE)


class StageLatency:
    """One stage's latencies (ms): exact count, mean, min and max; percentiles from log-spaced bins."""

    def __init__(self) -> None:
        self.counts = np.zeros(BINS, np.int64)
        self.count = 0
        self.total = 0.0
        self.min = math.inf
        self.max = -math.inf

    def add(self, ms: float) -> None:
        self.count += 1
        self.total += ms
        self.min = min(self.min, ms)
        self.max = max(self.max, ms)
        position = (math.log10(ms / LOWEST_MS) * BINS_PER_DECADE) if ms > LOWEST_MS else 0.0
        self.counts[min(int(position), BINS - 1)] += 1

    def percentile(self, q: float) -> float:
        """The q-th percentile (0..100): the geometric middle of the bin it falls in, kept within min and max."""
        if not self.count:
            return math.nan
        if q <= 0 or q >= 100:
            return self.min if q <= 0 else self.max
        rank = q / 100 * (self.count - 1)
        index = int(np.searchsorted(np.cumsum(self.counts), rank, side="right"))
        middle = LOWEST_MS * 10 ** ((index + 0.5) / BINS_PER_DECADE)
        return min(max(middle, self.min), self.max)

    def summary(self) -> dict[str, float]:
        return {"count": self.count, "mean": self.total / self.count if self.count else math.nan,
                "min": self.min, "p50": self.percentile(50), "p95": self.percentile(95),
                "p99": self.percentile(99), "max": self.max}


class LatencyStats:
    """Latencies of every frame of a run, per stage, in the same few kilobytes however long the run."""

    def __init__(self) -> None:
        self.stages: dict[str, StageLatency] = {}

    def add(self, latencies: dict[str, float]) -> None:
        """One frame's ``FrameResult.latencies_ms()``."""
        for stage, ms in latencies.items():
            self.stages.setdefault(stage, StageLatency()).add(ms)

    def summary(self) -> dict[str, dict[str, float]]:
        """Per stage: count, mean, min, p50, p95, p99 and max in ms."""
        return {stage: latency.summary() for stage, latency in self.stages.items()}
