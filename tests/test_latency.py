"""Run latency statistics: percentiles within the histogram's resolution, in the same memory however many frames."""

from __future__ import annotations

import pickle
import sys

import numpy as np
import pytest

from edge.latency import LatencyStats, StageLatency
from edge.pipeline import RunStats
from edge.results import Faces, FrameResult, Stamps


def test_percentiles_are_within_the_bins_resolution_of_the_exact_ones():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.lognormal(1.0, 0.6, 20_000), rng.uniform(40, 400, 500)])  # ms, with a slow tail
    stage = StageLatency()
    for value in values:
        stage.add(float(value))
    summary = stage.summary()
    assert summary["count"] == len(values)
    assert summary["mean"] == pytest.approx(values.mean(), rel=1e-9)
    assert (summary["min"], summary["max"]) == (values.min(), values.max())
    for q in (50, 95, 99):
        assert summary[f"p{q}"] == pytest.approx(np.percentile(values, q), rel=0.025)


def test_memory_does_not_grow_with_the_frames():
    stats = LatencyStats()
    record = {"capture": 0.4, "detect": 2.5, "classify": 0.3, "render": 1.1, "total": 6.0}
    stats.add(record)
    sizes = lambda: sum(stage.counts.nbytes + sys.getsizeof(stage) for stage in stats.stages.values())  # noqa: E731
    before = sizes()
    for i in range(50_000):
        stats.add({k: v * (1 + i % 7) for k, v in record.items()})
    assert sizes() == before
    assert stats.summary()["total"]["count"] == 50_001


def test_the_run_stats_keep_no_per_frame_records():
    stats, labels = RunStats(started=0.0), ("a", "b")

    def size_after(frames: int) -> int:
        """The stats' pickled size once that many more frames were added."""
        for i in range(frames):
            stamps = Stamps(captured=i, detect_start=i + 0.001, detect_end=i + 0.003, rendered=i + 0.004 * (i % 5))
            stats.add(FrameResult(seq=i, index=i, timestamp=i / 30, faces=Faces.empty(labels), stamps=stamps))
        return len(pickle.dumps(stats))

    assert size_after(1000) == size_after(4000)  # (frames_done stays a 2-byte int in the pickle)
    assert stats.frames_done == 5000 and stats.latency.summary()["total"]["count"] == 5000


def test_extremes_land_in_the_first_and_last_bins():
    stage = StageLatency()
    for value in (0.0, 1e-9, 1e9):
        stage.add(value)
    assert stage.percentile(0) == 0.0 and stage.percentile(100) == 1e9
    assert np.isnan(StageLatency().percentile(50))
