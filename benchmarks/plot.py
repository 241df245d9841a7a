"""Plots: end-to-end latency histograms of every variant and per-frame stage timelines of the pipeline runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.variants import FrameLog

TIMELINE_STAGES = ("queue", "detect", "classify", "render", "total")
HISTOGRAM_BINS = 60


def save_plot(logs: dict[str, FrameLog], path: Path, warmup: int) -> None:
    """One PNG: a latency histogram, then a per-frame timeline for each pipeline run (pipeline, live)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timelines = [name for name in ("pipeline", "live") if name in logs and logs[name].latencies]
    fig, axes = plt.subplots(1 + len(timelines), 1, figsize=(10, 3.6 * (1 + len(timelines))), squeeze=False)
    histogram = axes[0][0]
    totals = {name: np.array([r["total"] for r in log.latencies[warmup:] if "total" in r])
              for name, log in logs.items() if log.latencies}
    totals = {name: t for name, t in totals.items() if t.size}
    if totals:
        top = max(float(np.percentile(t, 99.5)) for t in totals.values())
        bins = np.linspace(0, top * 1.05, HISTOGRAM_BINS)
        for name, values in totals.items():
            histogram.hist(np.clip(values, 0, bins[-1]), bins=bins, histtype="step", linewidth=1.5,
                           label=f"{name} (p50 {np.median(values):.1f}, p99 {np.percentile(values, 99):.1f} ms)")
        histogram.legend(fontsize=8)
    histogram.set_xlabel("end-to-end latency, capture to rendered (ms)")
    histogram.set_ylabel("frames")
    histogram.set_title(f"latency after {warmup} warm-up frames")
    for ax, name in zip((row[0] for row in axes[1:]), timelines):
        log = logs[name]
        for stage in TIMELINE_STAGES:
            ax.plot([r.get(stage, np.nan) for r in log.latencies], linewidth=0.8, label=stage)
        ax.axvline(warmup - 0.5, color="grey", linestyle="--", linewidth=0.8)
        ax.set_yscale("log")
        ax.set_xlabel("processed frame")
        ax.set_ylabel("ms")
        ax.set_title(f"{name}: per-frame stage latency")
        ax.legend(fontsize=8, ncol=len(TIMELINE_STAGES))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
