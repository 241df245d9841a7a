"""Turning frame logs into the results dict, and the results dict into readable tables (text or Markdown)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from benchmarks.stats import box_recall, face_recall, stage_summaries, steady_cpu_ms, steady_fps, wall_fps
from edge.results import STAGES

if TYPE_CHECKING:  # benchmarks.variants needs psutil (the [bench] extra); the per-model benchmarks run without it
    from benchmarks.variants import FrameLog

BUSY_OTHER_CPU_PCT = 10.0  # % of one core used by other processes during a run: above this, warn


def publish(report: str, result: dict[str, Any], json_path: Path | None) -> None:
    """A benchmark's readable report on stdout, its results as JSON where asked for."""
    print(report)
    if json_path:
        json_path.write_text(json.dumps(result, indent=2) + "\n")


def variant_report(log: FrameLog, warmup: int, reference: Sequence[np.ndarray] | None = None) -> dict[str, Any]:
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
        theirs = [reference[i] for i in log.indices]
        report["recall"] = face_recall(log.has_face, [len(boxes) > 0 for boxes in theirs])
        report["face_recall"] = box_recall(log.boxes, theirs)
    report.update({k: v for k, v in log.extra.items() if k != "cpu_marks"})
    if "cpu_marks" in log.extra:  # the pipeline's steady CPU cost a frame, every process together
        report["cpu_ms_per_frame"] = steady_cpu_ms(log.extra["cpu_marks"], warmup)
    return report


def fmt(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], markdown: bool = False) -> str:
    """Columns, first left-aligned and the rest right-aligned: plain text, or a Markdown table."""
    cells = [list(headers)] + [[fmt(c) if not isinstance(c, str) else c for c in row] for row in rows]
    if markdown:
        rule = ["---"] + ["--:"] * (len(headers) - 1)
        return "\n".join("| " + " | ".join(row) + " |" for row in [cells[0], rule, *cells[1:]])
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


def throughput_table(results: dict[str, Any], markdown: bool = False) -> str:
    rows = []
    for key, title in VARIANT_TITLES.items():
        v = results["variants"].get(key)
        if v is None:
            continue
        total = v.get("latency_ms", {}).get("total", {})
        res = v.get("resources", {}).get("total", {})
        recall = v.get("recall", {}).get("recall")
        faces = v.get("face_recall", {}).get("recall")
        other = v.get("resources", {}).get("other_cpu_pct")
        rows.append([title, v["frames"], v["fps"], v["wall_fps"], total.get("p50"), total.get("p99"),
                     fmt(recall, 3), fmt(faces, 3), res.get("cpu_mean_pct"), fmt(v.get("cpu_ms_per_frame"), 2),
                     res.get("mem_peak_mb"), other])
    return table(["variant", "frames", "frames/s", "wall f/s", "p50 ms", "p99 ms", "recall", "face recall", "CPU %",
                  "CPU ms/frame", "PSS MB", "others' CPU %"], rows, markdown)


def latency_table(latency: dict[str, dict[str, float]], markdown: bool = False) -> str:
    rows = [[stage, s["mean"], s["p50"], s["p95"], s["p99"], s["max"]] for stage, s in latency.items()]
    return table(["stage (ms)", "mean", "p50", "p95", "p99", "max"], rows, markdown)


def resources_table(resources: dict[str, Any], markdown: bool = False) -> str:
    rows = [[p["name"], p["pid"], p["cpu_mean_pct"], p["cpu_peak_pct"], p["mem_peak_mb"]]
            for p in resources["processes"]]
    total = resources["total"]
    rows.append(["all processes", "", total["cpu_mean_pct"], total["cpu_peak_pct"], total["mem_peak_mb"]])
    kind = resources["memory_kind"].upper()
    return (table(["process", "pid", "CPU % mean", "CPU % peak", f"{kind} peak MB"], rows, markdown)
            + ("\n\n" if markdown else "\n")
            + f"(CPU % of one core; {resources['cores']} cores; CPU sampled every {resources['interval_s']:g} s; "
              f"the sampling itself used {fmt(resources.get('overhead_cpu_pct'))} % in main; "
              f"other processes on the machine used {fmt(resources.get('other_cpu_pct'))} %)")


def classifier_table(bench: dict[str, Any], markdown: bool = False) -> str:
    rows = [[r["role"], r["model"], r["input_dtype"], r["size_kb"], r["threads"], f"{r['median_ms']:.3f}",
             f"{r['p99_ms']:.3f}"] for r in bench["rows"]]
    return table(["role", "model", "input", "KB", "threads", "median ms", "p99 ms"], rows, markdown)


def targets_table(rows: list[dict[str, Any]], markdown: bool = False) -> str:
    verdict = {True: "met", False: "NOT MET", None: "not measured"}
    return table(["target", "required", "measured", "verdict"],
                 [[r["name"], r["target"], fmt(r["measured"], 3 if r["unit"] in ("", "s", "x") else 1),
                   verdict[r["met"]]] for r in rows], markdown)


def heading(title: str, markdown: bool) -> str:
    return f"### {title}\n" if markdown else title


def summary_lines(results: dict[str, Any]) -> list[str]:
    meta, video = results["meta"], results["video"]
    return [
        f"{meta['date']}  {meta['cpu_model']}  ({meta['cores']} cores, load {fmt(meta.get('load_1m_at_start'), 2)} "
        f"at start)  commit {meta['commit']}",
        f"source {video['original']}: {video['width']}x{video['height']} {video['codec']} {video['fps']:.1f} fps, "
        f"{video['clip_frames']} frames x {video['loop']} = {video['frames']} frames"
        + ("" if video["bit_exact"] else " (loop re-encoded)"),
        f"model {results['model']}",
    ]


def throughput_section(results: dict[str, Any], markdown: bool) -> list[str]:
    ratios, warmup = results["ratios"], results["settings"]["warmup_frames"]
    return [heading(f"Throughput (frames/s after {warmup} warm-up frames; wall f/s includes start-up; "
                    "latency = capture to rendered)", markdown),
            throughput_table(results, markdown),
            ("\n" if markdown else "")
            + passes_line(results["variants"].get("pipeline", {}))
            + f"pipeline / seeds baseline {fmt(ratios['pipeline_over_seeds'], 2)}x, "
              f"pipeline / sequential with its detector {fmt(ratios['pipeline_over_sequential'], 2)}x, "
              f"pipeline / decode {fmt(ratios['pipeline_over_decode'], 3)}"]


def passes_line(pipeline: dict[str, Any]) -> str:
    runs = pipeline.get("runs_fps", [])
    if len(runs) < 2:
        return ""
    return f"pipeline passes {', '.join(fmt(r) for r in runs)} frames/s (the median pass is reported); "


def pipeline_section(results: dict[str, Any], markdown: bool) -> list[str]:
    pipeline = results["variants"].get("pipeline")
    if not pipeline:
        return []
    parts = ["", heading("Pipeline per-stage latency", markdown), latency_table(pipeline["latency_ms"], markdown),
             "", heading("Pipeline processes", markdown), resources_table(pipeline["resources"], markdown)]
    startup = results.get("startup")
    if startup:
        parts += ["", heading("Start-up", markdown),
                  f"command start to first processed frame, median {fmt(startup['median_s'], 3)} s "
                  f"(runs: {', '.join(fmt(s, 3) for s in startup['runs_s'])}); in-process Pipeline.run to first "
                  f"frame {fmt(pipeline.get('run_first_frame_s'), 3)} s"]
    return parts


def live_section(results: dict[str, Any], markdown: bool) -> list[str]:
    live = results.get("live")
    if not live:
        return []
    return ["", heading(f"Live replay at {live['fps_target']:.1f} fps", markdown),
            f"{live['frames_done']} of {live['frames_read']} frames processed, {live['dropped']} dropped by the "
            f"pipeline, {live['source_skipped']} skipped at the source (drop rate {live['drop_rate']:.2%}), "
            f"{fmt(live['fps'])} frames/s; capture = waiting for the camera's next frame" + ("\n" if markdown else ""),
            latency_table(live["latency_ms"], markdown), "", resources_table(live["resources"], markdown)]


def classifier_section(results: dict[str, Any], markdown: bool) -> list[str]:
    bench = results.get("classifier")
    if not bench or not bench.get("rows"):
        return []
    agreement = ", ".join(f"{k} {v:.1%}" for k, v in bench["top1_agreement"].items())
    return ["", heading(f"Classifier alone, per face, {bench['crops']} real crops (top-1 agreement with "
                        f"{bench['reference']}: {agreement})", markdown), classifier_table(bench, markdown)]


def disturbance_warning(results: dict[str, Any]) -> list[str]:
    busiest = max((v.get("resources", {}).get("other_cpu_pct") or 0.0 for v in results["variants"].values()),
                  default=0.0)
    if busiest <= BUSY_OTHER_CPU_PCT:
        return []
    return ["", f"warning: other processes used up to {busiest:.0f} % CPU during the runs; "
                "the figures are skewed; measure again on a quiet machine"]


def text_report(results: dict[str, Any], markdown: bool = False) -> str:
    """Everything measured, as plain-text tables or as Markdown."""
    summary = summary_lines(results)
    parts = ["  \n".join(summary) if markdown else "\n".join(summary), ""]
    parts += throughput_section(results, markdown)
    parts += pipeline_section(results, markdown)
    parts += live_section(results, markdown)
    parts += classifier_section(results, markdown)
    parts += ["", heading("Targets", markdown), targets_table(results["targets"], markdown)]
    parts += disturbance_warning(results)
    return "\n".join(parts)
