"""Validation report: does the converted model still give the float model's answers, how fast, how big."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge.classify import Classifier

log = logging.getLogger(__name__)

LATENCY_RUNS = 300  # timed single-face calls per model
LATENCY_WARMUP = 20  # untimed calls first (allocation, caches)


def compare(reference: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    """Top-1 agreement and probability differences of a model against the float reference."""
    if not len(reference):
        return {"faces": 0, "top1_agreement": None, "mean_abs_prob_diff": None, "max_abs_prob_diff": None}
    diff = np.abs(probs.astype(np.float64) - reference.astype(np.float64))
    agree = probs.argmax(axis=1) == reference.argmax(axis=1)
    return {
        "faces": int(len(reference)),
        "top1_agreement": round(float(agree.mean()), 4),
        "disagreeing_faces": int((~agree).sum()),
        "mean_abs_prob_diff": round(float(diff.mean()), 5),
        "max_abs_prob_diff": round(float(diff.max()), 5),
    }


def latency_ms(classifier: Classifier, crops: np.ndarray, runs: int = LATENCY_RUNS,
               warmup: int = LATENCY_WARMUP) -> dict[str, Any]:
    """Per-face latency of ``classifier.classify`` on one crop at a time (preprocess + invoke + dequantize)."""
    if not len(crops) or runs < 1:
        return {"median": None, "p99": None, "runs": 0}
    for i in range(warmup):
        classifier.classify(crops[i % len(crops)][np.newaxis])
    times = np.empty(runs)
    for i in range(runs):
        face = crops[i % len(crops)][np.newaxis]
        start = time.perf_counter()
        classifier.classify(face)
        times[i] = time.perf_counter() - start
    times *= 1000.0
    return {"median": round(float(np.median(times)), 4), "p99": round(float(np.percentile(times, 99)), 4),
            "runs": runs}


def write_report(report: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(report, indent=2) + "\n")


def percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def number(value: float | int | None, digits: int = 4) -> str:
    if value is None:
        return "-"
    return f"{value:,}" if isinstance(value, int) else f"{value:.{digits}f}"


def describe_faces(sources: list[dict[str, Any]]) -> str:
    parts = []
    for s in sources:
        span = f"item {s['first']}" if s["first"] == s["last"] else f"items {s['first']}-{s['last']}"
        extra = f", {s['augmented']} augmented" if s["augmented"] else ""
        parts.append(f"{Path(s['source']).name} {span} ({s['faces']} faces{extra})")
    return "; ".join(parts) if parts else "none"


def format_report(report: dict[str, Any]) -> str:
    """The report as a table a person reads at the end of a conversion."""
    quant = report["quantization"]
    val, cal = report["validation"], report["calibration"]
    kind = "held-out" if val["held_out"] else "NOT held-out (calibration)"
    lines = [
        f"{report['model']}  ({quant}{', per-channel weights' if report.get('per_channel') else ''})",
        f"calibration: {cal['faces']} faces: {describe_faces(cal['sources'])}",
        f"validation:  {val['faces']} {kind} faces: {describe_faces(val['sources'])}",
    ]
    if not val["faces"]:
        lines.append("no validation faces: agreement not measured (give --calib or --val media with faces)")
    float_cmp, conv_cmp = val["float_tflite"], val["converted"]
    size, lat_f, lat_c = report["size_bytes"], report["latency_ms"]["float_tflite"], report["latency_ms"]["converted"]
    header = f"{'':24}{'Keras float':>14}{'TFLite float':>14}{'TFLite ' + quant:>16}"
    rows = [
        ("top-1 agreement", "reference", percent(float_cmp["top1_agreement"]), percent(conv_cmp["top1_agreement"])),
        ("mean |prob diff|", "-", number(float_cmp["mean_abs_prob_diff"]), number(conv_cmp["mean_abs_prob_diff"])),
        ("max |prob diff|", "-", number(float_cmp["max_abs_prob_diff"]), number(conv_cmp["max_abs_prob_diff"])),
        ("size (bytes)", number(size["keras"]), number(size["float_tflite"]), number(size["converted"])),
        ("latency median (ms)", "-", number(lat_f["median"], 3), number(lat_c["median"], 3)),
        ("latency p99 (ms)", "-", number(lat_f["p99"], 3), number(lat_c["p99"], 3)),
    ]
    lines += ["", header] + [f"{name:24}{a:>14}{b:>14}{c:>16}" for name, a, b, c in rows]
    seen = report["calibration"].get("converted")
    if seen and seen["faces"]:
        lines.append(f"(on the {seen['faces']} calibration faces themselves: "
                     f"{percent(seen['top1_agreement'])} agreement, mean |prob diff| {seen['mean_abs_prob_diff']})")
    lines.append(f"latency: per face through edge.classify.Classifier, {report['latency_ms']['threads']} thread, "
                 f"{lat_c['runs']} runs")
    return "\n".join(lines)
