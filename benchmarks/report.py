"""Turning frame logs into the results dict, and the results dict into a readable table."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from benchmarks.stats import face_recall, stage_summaries, steady_fps, wall_fps
from benchmarks.variants import FrameLog
from edge.results import STAGES

BUSY_OTHER_CPU_PCT = 10.0  # % of one core used by other processes during a run: above this, warn


def variant_report(log: FrameLog, warmup: int, reference: Sequence[bool] | None = None) -> dict[str, Any]:
    """Throughput (steady and wall), latency percentiles after warm-up, and recall against the reference."""
    latencies = log.latencies[warmup:] if len(log.latencies) > warmup + 1 else log.latencies
    report: dict[str, Any] = {
        "frames": len(log.done),
        "fps": steady_fps(log.done, warmup),
        "wall_fps": wall_fps(len(log.done), log.elapsed_s),
        "elapsed_s": log.elapsed_s,
        "first_frame_s": log.first_frame_s,
    }
    if latencies:
        report["latency_ms"] = stage_summaries(latencies, STAGES)
    if reference is not None and log.indices:
        report["recall"] = face_recall(log.has_face, [reference[i] for i in log.indices])
    report.update(log.extra)
    return report


def fmt(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Plain-text columns: first column left-aligned, the rest right-aligned."""
    cells = [list(headers)] + [[fmt(c) if not isinstance(c, str) else c for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


VARIANT_TITLES = {
    "decode": "decode only (ceiling)",
    "seeds": "sequential, seeds' Haar 1.3/5 full frame",
    "sequential": "sequential, pipeline's detector",
    "pipeline": "pipeline (multi-process)",
}


def throughput_table(results: dict[str, Any]) -> str:
    rows = []
    for key, title in VARIANT_TITLES.items():
        v = results["variants"].get(key)
        if v is None:
            continue
        total = v.get("latency_ms", {}).get("total", {})
        res = v.get("resources", {}).get("total", {})
        recall = v.get("recall", {}).get("recall")
        other = v.get("resources", {}).get("other_cpu_pct")
        rows.append([title, v["frames"], v["fps"], v["wall_fps"], total.get("p50"), total.get("p99"),
                     fmt(recall, 3), res.get("cpu_mean_pct"), res.get("mem_peak_mb"), other])
    return table(["variant", "frames", "frames/s", "wall f/s", "p50 ms", "p99 ms", "recall", "CPU %", "PSS MB",
                  "others' CPU %"], rows)


def latency_table(latency: dict[str, dict[str, float]]) -> str:
    rows = [[stage, s["mean"], s["p50"], s["p95"], s["p99"], s["max"]] for stage, s in latency.items()]
    return table(["stage (ms)", "mean", "p50", "p95", "p99", "max"], rows)


def resources_table(resources: dict[str, Any]) -> str:
    rows = [[p["name"], p["pid"], p["cpu_mean_pct"], p["cpu_peak_pct"], p["mem_peak_mb"]] for p in resources["processes"]]
    total = resources["total"]
    rows.append(["all processes", "", total["cpu_mean_pct"], total["cpu_peak_pct"], total["mem_peak_mb"]])
    kind = resources["memory_kind"].upper()
    return (table(["process", "pid", "CPU % mean", "CPU % peak", f"{kind} peak MB"], rows)
            + f"\n(CPU % of one core; {resources['cores']} cores; sampled every {resources['interval_s']:g} s; "
              f"the sampling itself used {fmt(resources.get('overhead_cpu_pct'))} % in main; "
              f"other processes on the machine used {fmt(resources.get('other_cpu_pct'))} %)")


def classifier_table(bench: dict[str, Any]) -> str:
    rows = [[r["role"], r["model"], r["input_dtype"], r["size_kb"], r["threads"], f"{r['median_ms']:.3f}",
             f"{r['p99_ms']:.3f}"] for r in bench["rows"]]
    return table(["role", "model", "input", "KB", "threads", "median ms", "p99 ms"], rows)


def targets_table(rows: list[dict[str, Any]]) -> str:
    verdict = {True: "met", False: "NOT MET", None: "not measured"}
    return table(["target", "required", "measured", "verdict"],
                 [[r["name"], r["target"], fmt(r["measured"], 3 if r["unit"] in ("", "s", "x") else 1),
                   verdict[r["met"]]] for r in rows])


def text_report(results: dict[str, Any]) -> str:
    """Everything measured, as tables."""
    meta, video, settings = results["meta"], results["video"], results["settings"]
    ratios = results["ratios"]
    parts = [
        f"{meta['date']}  {meta['cpu_model']}  ({meta['cores']} cores, load {fmt(meta.get('load_1m_at_start'), 2)} "
        f"at start)  commit {meta['commit']}",
        f"source {video['original']}: {video['width']}x{video['height']} {video['codec']} {video['fps']:.1f} fps, "
        f"{video['clip_frames']} frames x {video['loop']} = {video['frames']} frames"
        + ("" if video["bit_exact"] else " (loop re-encoded)"),
        f"model {results['model']}",
        "",
        f"Throughput (frames/s after {settings['warmup_frames']} warm-up frames; wall f/s includes start-up; "
        "latency = capture to rendered)",
        throughput_table(results),
        f"pipeline / seeds baseline {fmt(ratios['pipeline_over_seeds'], 2)}x, "
        f"pipeline / sequential with its detector {fmt(ratios['pipeline_over_sequential'], 2)}x, "
        f"pipeline / decode {fmt(ratios['pipeline_over_decode'], 3)}",
    ]
    pipeline = results["variants"].get("pipeline")
    if pipeline:
        parts += ["", "Pipeline per-stage latency", latency_table(pipeline["latency_ms"]),
                  "", "Pipeline processes", resources_table(pipeline["resources"])]
    startup = results.get("startup")
    if startup:
        parts += ["", f"Start-up: command start to first processed frame, median {fmt(startup['median_s'], 3)} s "
                      f"(runs: {', '.join(fmt(s, 3) for s in startup['runs_s'])}); in-process Pipeline.run to first "
                      f"frame {fmt(pipeline.get('run_first_frame_s') if pipeline else None, 3)} s"]
    live = results.get("live")
    if live:
        parts += ["", f"Live replay at {live['fps_target']:.1f} fps: {live['frames_done']} of {live['frames_read']} "
                      f"frames processed, {live['dropped']} dropped by the pipeline, {live['source_skipped']} skipped "
                      f"at the source (drop rate {live['drop_rate']:.2%}), {fmt(live['fps'])} frames/s",
                  latency_table(live["latency_ms"]), resources_table(live["resources"])]
    bench = results.get("classifier")
    if bench and bench.get("rows"):
        agreement = ", ".join(f"{k} {v:.1%}" for k, v in bench["top1_agreement"].items())
        parts += ["", f"Classifier, per face, {bench['crops']} real crops (top-1 agreement with "
                      f"{bench['reference']}: {agreement})", classifier_table(bench)]
    parts += ["", "Targets", targets_table(results["targets"])]
    busiest = max((v.get("resources", {}).get("other_cpu_pct") or 0.0 for v in results["variants"].values()),
                  default=0.0)
    if busiest > BUSY_OTHER_CPU_PCT:
        parts.append(f"warning: other processes used up to {busiest:.0f} % CPU during the runs; "
                     "the figures are skewed; measure again on a quiet machine")
    return "\n".join(parts)
