"""Benchmark arithmetic: percentiles, latency summaries, steady-state throughput, ratios and face recall."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from edge.track import overlap_pairs

PERCENTILES = (50, 95, 99)
MATCH_IOU = 0.4  # a variant's box and a reference box this similar are the same face


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (linear interpolation between closest ranks); nan when there are no values."""
    if len(values) == 0:
        return math.nan
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def summarize(values: Sequence[float]) -> dict[str, float]:
    """n, mean, min, p50, p95, p99 and max of a sample (nan statistics for an empty one)."""
    data = np.asarray(values, dtype=np.float64)
    summary: dict[str, float] = {"n": int(data.size)}
    summary["mean"] = float(data.mean()) if data.size else math.nan
    summary["min"] = float(data.min()) if data.size else math.nan
    for q in PERCENTILES:
        summary[f"p{q}"] = percentile(data, q)
    summary["max"] = float(data.max()) if data.size else math.nan
    return summary


def stage_summaries(records: Iterable[dict[str, float]], stages: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per-stage summaries of per-frame latency dicts; a stage absent from every record is left out."""
    records = list(records)
    out = {}
    for stage in stages:
        values = [r[stage] for r in records if stage in r]
        if values:
            out[stage] = summarize(values)
    return out


def steady_fps(done_times: Sequence[float], warmup: int) -> float:
    """Frames per second after the first ``warmup`` frames: frames finished after frame ``warmup`` over the time since.

    Start-up (process spawn, model load, queue fill) is excluded; it is reported separately.
    Falls back to no warm-up on runs too short to spare it; nan for fewer than two frames.
    """
    if len(done_times) < 2:
        return math.nan
    start = min(warmup, len(done_times) - 2)
    span = done_times[-1] - done_times[start]
    return (len(done_times) - 1 - start) / span if span > 0 else math.nan


def steady_cpu_ms(marks: Sequence[tuple[int, float]], warmup: int) -> float:
    """CPU milliseconds a frame (all processes) between the first checkpoint at or after ``warmup`` frames
    and the last one; nan without two such checkpoints."""
    steady = [(frames, cpu) for frames, cpu in marks if frames >= warmup] or list(marks)
    if len(steady) < 2 or steady[-1][0] <= steady[0][0]:
        return math.nan
    return 1000.0 * (steady[-1][1] - steady[0][1]) / (steady[-1][0] - steady[0][0])


def wall_fps(frames: int, elapsed_s: float) -> float:
    """Frames per second over the whole run, start-up included."""
    return frames / elapsed_s if elapsed_s > 0 else math.nan


def ratio(numerator: float | None, denominator: float | None) -> float:
    """numerator / denominator, nan when either is missing or the denominator is not positive."""
    if numerator is None or denominator is None or not denominator > 0 or math.isnan(numerator):
        return math.nan
    return numerator / denominator


def box_recall(found: Sequence[np.ndarray], reference: Sequence[np.ndarray], min_iou: float = MATCH_IOU
               ) -> dict[str, float]:
    """Face-level recall: the share of the reference's faces that the variant boxes too.

    Frame by frame, each reference face is matched to at most one of the variant's boxes
    with an IoU of at least ``min_iou`` (as many pairs as possible); ``extra`` counts the
    variant's boxes left unmatched (reference misses or false positives).
    """
    if len(found) != len(reference):
        raise ValueError(f"found and reference must cover the same frames, got {len(found)} and {len(reference)}")
    hits = extra = total = 0
    for ours, theirs in zip(found, reference):
        matched = matched_pairs(np.asarray(ours).reshape(-1, 4), np.asarray(theirs).reshape(-1, 4), min_iou)
        hits += matched
        total += len(theirs)
        extra += len(ours) - matched
    return {"reference_faces": total, "hits": hits, "extra": extra, "recall": hits / total if total else math.nan}


def matched_pairs(ours: np.ndarray, theirs: np.ndarray, min_iou: float) -> int:
    """The most one-to-one pairs of boxes overlapping by at least ``min_iou`` (edge.track.overlap_pairs)."""
    return len(overlap_pairs(theirs, ours, min_iou))


def median_index(values: Sequence[float]) -> int:
    """Index of the median value; of an even count, the lower middle one."""
    return int(np.argsort(values, kind="stable")[(len(values) - 1) // 2])


def face_recall(found: Sequence[bool], reference: Sequence[bool]) -> dict[str, float]:
    """Frame-level face recall of a variant against a reference detector on the same frames.

    ``recall`` is the share of the frames where the reference finds at least one face in
    which the variant finds at least one too; ``extra`` counts frames where only the
    variant finds a face (a reference miss or a false positive).
    """
    if len(found) != len(reference):
        raise ValueError(f"found and reference must cover the same frames, got {len(found)} and {len(reference)}")
    both = sum(1 for f, r in zip(found, reference) if f and r)
    reference_frames = sum(1 for r in reference if r)
    return {
        "frames": len(reference),
        "reference_frames": reference_frames,
        "variant_frames": sum(1 for f in found if f),
        "hits": both,
        "extra": sum(1 for f, r in zip(found, reference) if f and not r),
        "recall": both / reference_frames if reference_frames else math.nan,
    }
