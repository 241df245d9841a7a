"""Recall and cost on the stress set: every clip through the pipeline with each detector, against the full-resolution
Haar reference, per clip, in total and for the worst clip; false boxes on a clip without faces; faces one
detector finds and another misses.

    python benchmarks/fps.py --stress stress/ --detector haar blazeface --repeats 3 --crops crops/
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import permutations
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from benchmarks.fps import least_disturbed, meta, monitored_pipeline, progress
from benchmarks.media import BenchVideo, bench_video, reference_faces
from benchmarks.report import fmt, table, variant_report
from benchmarks.stats import MATCH_IOU, box_recall, median_index
from benchmarks.stress import DATA, MANIFEST, read_manifest, read_truth, write_stress_set
from edge.boxes import iou_matrix
from edge.config import Config, override
from edge.detect import make_detector
from edge.video import read_frames

NO_FACE_CLIP = DATA / "no_face.mp4"
REFERENCE_SCALE_FACTOR = 1.1  # the reference: detectMultiScale(gray, 1.1, 4) at full resolution, every size
REFERENCE_MIN_NEIGHBORS = 4  # from the cascade's 24 px window up (the minSize=(18, 18) is below it)
TRUE_FACE_IOU = 0.3  # a reference box this close to where a face truly is, is that face; others are false boxes
VISIBLE_SHARE = 0.75  # a true face counts when this share of its box is inside the frame ...
VISIBLE_MIN_PX = 24  # ... and it is at least the cascade's window
CROPS_PER_SHEET = 12  # faces shown per clip and direction with --crops
CROP_SIDE = 96  # pixels per face on a contact sheet
SECTION = "## Stress set (issue 11)"


def cached_reference(video: BenchVideo, config: Config) -> list[np.ndarray]:
    """The reference boxes of a clip, computed once and kept beside it (keyed by the clip's bytes and the settings)."""
    key = {"sha256": hashlib.sha256(video.path.read_bytes()).hexdigest(), "cascade": config.detector.haar.cascade,
           "scale_factor": REFERENCE_SCALE_FACTOR, "min_neighbors": REFERENCE_MIN_NEIGHBORS,
           "opencv": cv2.__version__}
    cache = video.path.with_suffix(".reference.json")
    if cache.is_file():
        stored = json.loads(cache.read_text())
        if stored.get("key") == key:
            return [np.array(boxes, np.int32).reshape(-1, 4) for boxes in stored["boxes"]]
    found = reference_faces(video, config.detector, REFERENCE_SCALE_FACTOR, REFERENCE_MIN_NEIGHBORS)
    cache.write_text(json.dumps({"key": key, "boxes": [boxes.tolist() for boxes in found]}))
    return found


def clipped(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    return np.clip(boxes, 0, [width, height, width, height])


def split_reference(reference: list[np.ndarray], truth: list[np.ndarray], width: int, height: int
                    ) -> tuple[list[np.ndarray], int]:
    """The reference's boxes on a true face, and how many it put elsewhere (an eye of a tilted head, a palm).

    A full-resolution Haar scan is the yardstick, but it has false positives of its own, and no
    detector should be asked to repeat them.
    """
    faces, false_boxes = [], 0
    for ref, true in zip(reference, truth):
        if not len(ref):
            faces.append(ref)
            continue
        near = iou_matrix(ref, clipped(true, width, height)).max(axis=1) if len(true) else np.zeros(len(ref))
        faces.append(ref[near >= TRUE_FACE_IOU])
        false_boxes += int((near < TRUE_FACE_IOU).sum())
    return faces, false_boxes


def visible_faces(truth: list[np.ndarray], width: int, height: int) -> list[np.ndarray]:
    """The true faces mostly inside the frame and at least the cascade's window in size."""
    visible = []
    for boxes in truth:
        inside = clipped(boxes, width, height)
        area = lambda b: np.maximum(b[:, 2] - b[:, 0], 0) * np.maximum(b[:, 3] - b[:, 1], 0)  # noqa: E731
        keep = (area(inside) >= VISIBLE_SHARE * area(boxes)) & (boxes[:, 2] - boxes[:, 0] >= VISIBLE_MIN_PX)
        visible.append(inside[keep])
    return visible


def stress_clips(folder: Path) -> list[tuple[dict[str, Any], Path]]:
    """The clips of a stress folder, writing the default set there first if it has none."""
    if not (folder / MANIFEST).is_file():
        progress(f"no stress set in {folder}: writing one (python benchmarks/stress.py --out {folder})")
        write_stress_set(folder)
    return [(vars(clip), path) for clip, path in read_manifest(folder)]


def detector_config(config: Config, kind: str) -> Config:
    return override(config, "detector", kind=kind)


def run_clip(video: BenchVideo, config: Config, model: Path, workdir: Path, name: str, tries: int,
             interval_s: float) -> tuple[list[np.ndarray], dict[str, Any], dict]:
    """One pipeline pass over a clip: its boxes per frame, its report (without recall) and its resources."""
    frame_log, resources = least_disturbed(
        lambda: monitored_pipeline(video, config, model, workdir, name, interval_s), name, tries)
    if frame_log.indices != list(range(video.frames)):
        raise RuntimeError(f"{name}: the pipeline delivered {len(frame_log.indices)} of {video.frames} frames")
    return frame_log.boxes, frame_log, resources


@dataclass(frozen=True)
class Yardstick:
    """What a clip's boxes are measured against: the reference's faces (its false boxes left out) and the truth."""

    reference: list[np.ndarray]
    reference_false_boxes: int
    truth: list[np.ndarray]  # the true faces in view


def yardstick(video: BenchVideo, config: Config) -> Yardstick:
    reference = cached_reference(video, config)
    truth = read_truth(video.path)
    faces, false_boxes = split_reference(reference, truth, video.width, video.height)
    return Yardstick(faces, false_boxes, visible_faces(truth, video.width, video.height))


def detector_alone_ms(path: Path, config: Config) -> float:
    """CPU milliseconds a frame of the configured detector alone, in this process on one OpenCV thread, over
    a clip's frames decoded beforehand: the detector's own cost, without the pipeline's other stages."""
    frames = list(read_frames(path))
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        detector = make_detector(config.detector)
        started = time.thread_time()
        for frame in frames:
            detector.detect(frame)
        return 1000.0 * (time.thread_time() - started) / max(1, len(frames))
    finally:
        cv2.setNumThreads(threads)


def clip_report(frame_log: Any, resources: dict, measure: Yardstick, warmup: int) -> dict[str, Any]:
    report = variant_report(frame_log, warmup, measure.reference)
    report["reference_false_boxes"] = measure.reference_false_boxes
    report["truth_recall"] = box_recall(frame_log.boxes, measure.truth)
    report["other_cpu_pct"] = resources.get("other_cpu_pct")
    report.pop("latency_ms", None)
    return report


def summary(clips: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """All clips pooled (every frame and face counts once), the mean over clips, and the worst clip of each figure."""
    def pooled(part: str, key: str) -> float:
        hits = sum(c[part]["hits"] for c in clips.values())
        total = sum(c[part][key] for c in clips.values())
        return hits / total if total else math.nan

    frames = sum(c["frames"] for c in clips.values())
    seconds = sum(c["frames"] / c["fps"] for c in clips.values() if c["fps"] > 0)
    measured = [c for c in clips.values() if not math.isnan(c["cpu_ms_per_frame"])]
    worst = {
        "frame_recall": min(clips.items(), key=lambda kv: nan_last(kv[1]["recall"]["recall"])),
        "face_recall": min(clips.items(), key=lambda kv: nan_last(kv[1]["face_recall"]["recall"])),
        "truth_recall": min(clips.items(), key=lambda kv: nan_last(kv[1]["truth_recall"]["recall"])),
        "fps": min(clips.items(), key=lambda kv: kv[1]["fps"]),
        "cpu_ms_per_frame": max(clips.items(), key=lambda kv: nan_first(kv[1]["cpu_ms_per_frame"])),
        "detector_ms_per_frame": max(clips.items(), key=lambda kv: nan_first(kv[1]["detector_ms_per_frame"])),
    }
    return {
        "total": {"frames": frames, "frame_recall": pooled("recall", "reference_frames"),
                  "face_recall": pooled("face_recall", "reference_faces"),
                  "truth_recall": pooled("truth_recall", "reference_faces"),
                  "fps": frames / seconds if seconds else math.nan,
                  "cpu_ms_per_frame": (sum(c["cpu_ms_per_frame"] * c["frames"] for c in measured)
                                       / sum(c["frames"] for c in measured)) if measured else math.nan,
                  "detector_ms_per_frame": sum(c["detector_ms_per_frame"] * c["frames"] for c in clips.values())
                  / frames},
        "mean": {"frame_recall": mean_of(c["recall"]["recall"] for c in clips.values()),
                 "face_recall": mean_of(c["face_recall"]["recall"] for c in clips.values()),
                 "truth_recall": mean_of(c["truth_recall"]["recall"] for c in clips.values()),
                 "fps": mean_of(c["fps"] for c in clips.values()),
                 "cpu_ms_per_frame": mean_of(c["cpu_ms_per_frame"] for c in clips.values()),
                 "detector_ms_per_frame": mean_of(c["detector_ms_per_frame"] for c in clips.values())},
        "worst": {figure: {"clip": name, "value": value_of(figure, report)} for figure, (name, report) in worst.items()},
    }


def value_of(figure: str, report: dict[str, Any]) -> float:
    return {"frame_recall": lambda r: r["recall"]["recall"], "face_recall": lambda r: r["face_recall"]["recall"],
            "truth_recall": lambda r: r["truth_recall"]["recall"],
            "fps": lambda r: r["fps"], "cpu_ms_per_frame": lambda r: r["cpu_ms_per_frame"],
            "detector_ms_per_frame": lambda r: r["detector_ms_per_frame"]}[figure](report)


def nan_last(value: float) -> float:
    return math.inf if math.isnan(value) else value


def nan_first(value: float) -> float:
    return -math.inf if math.isnan(value) else value


def mean_of(values: Any) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return statistics.fmean(kept) if kept else math.nan


def unmatched(ours: list[np.ndarray], theirs: list[np.ndarray]) -> list[tuple[int, np.ndarray]]:
    """(frame, box) of every box in ``ours`` that no box of ``theirs`` in the same frame overlaps at MATCH_IOU."""
    missing = []
    for frame, (a, b) in enumerate(zip(ours, theirs)):
        if not len(a):
            continue
        if len(b) == 0:
            missing += [(frame, box) for box in a]
            continue
        best = iou_matrix(a, b).max(axis=1)
        missing += [(frame, box) for box, iou in zip(a, best) if iou < MATCH_IOU]
    return missing


def contact_sheet(path: Path, video: Path, faces: list[tuple[int, np.ndarray]], title: str) -> None:
    """Up to CROPS_PER_SHEET of the faces, evenly spread over the clip, each with its frame number."""
    chosen = [faces[int(i)] for i in np.linspace(0, len(faces) - 1, min(CROPS_PER_SHEET, len(faces))).round()]
    wanted = {frame for frame, _ in chosen}
    frames: dict[int, np.ndarray] = {}
    for index, frame in enumerate(read_frames(video)):
        if index in wanted:
            frames[index] = frame
        if len(frames) == len(wanted):
            break
    tiles = []
    for frame_number, (x1, y1, x2, y2) in chosen:
        frame = frames[frame_number]
        pad = int(0.2 * max(x2 - x1, y2 - y1))
        crop = frame[max(0, y1 - pad):y2 + pad, max(0, x1 - pad):x2 + pad]
        tile = cv2.resize(crop, (CROP_SIDE, CROP_SIDE), interpolation=cv2.INTER_AREA)
        cv2.putText(tile, str(frame_number), (3, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 255), 1)
        tiles.append(tile)
    strip = np.hstack(tiles)
    banner = np.full((20, strip.shape[1], 3), 255, np.uint8)
    cv2.putText(banner, title[:strip.shape[1] // 7], (3, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1)
    cv2.imwrite(str(path), np.vstack([banner, strip]))


def disagreements(boxes: dict[str, list[np.ndarray]], name: str, video: Path, crops: Path | None
                  ) -> dict[str, int]:
    """Faces each detector (or the reference) boxes that another misses, per ordered pair; sheets into ``crops``."""
    counts = {}
    for a, b in permutations(boxes, 2):
        if a == "reference":
            continue  # the reference's faces another misses are the recall figures
        faces = unmatched(boxes[a], boxes[b])
        counts[f"{a}_not_{b}"] = len(faces)
        if crops is not None and faces:
            contact_sheet(crops / f"{name}_{a}_not_{b}.png", video, faces,
                          f"{name}: {len(faces)} boxes of {a} that {b} lacks (frame numbers)")
    return counts


def no_face_report(config: Config, model: Path, workdir: Path, kind: str, tries: int, interval_s: float,
                   clip: Path = NO_FACE_CLIP) -> dict[str, Any]:
    """False boxes on a clip with no face in it."""
    video = bench_video(clip, 1, workdir)
    boxes, _, _ = run_clip(video, detector_config(config, kind), model, workdir, f"no_face_{kind}", tries, interval_s)
    return {"clip": str(clip.relative_to(DATA.parent.parent)) if clip.is_relative_to(DATA.parent.parent) else str(clip),
            "frames": len(boxes), "false_boxes": int(sum(len(b) for b in boxes)),
            "frames_with_boxes": int(sum(1 for b in boxes if len(b)))}


def stress_results(args: argparse.Namespace, config: Config, model: Path, workdir: Path, warmup: int,
                   interval_s: float, argv: Sequence[str] | None) -> dict[str, Any]:
    """Every clip with every detector, ``args.repeats`` passes interleaved (clip by clip, detector by detector);
    the pass with the median CPU cost a frame is kept for each clip and detector."""
    clips = stress_clips(args.stress)
    kinds = list(args.detector)
    videos = {clip["name"]: bench_video(path, 1, workdir) for clip, path in clips}
    progress(f"full-resolution Haar reference of {len(clips)} clips (cached beside them)")
    measures = {name: yardstick(video, config) for name, video in videos.items()}
    passes: dict[tuple[str, str], list[tuple[Any, dict]]] = {}
    for repeat in range(args.repeats):
        for clip, _ in clips:
            for kind in kinds:
                progress(f"pass {repeat + 1}/{args.repeats}: {clip['name']} with {kind}")
                _, frame_log, resources = run_clip(videos[clip["name"]], detector_config(config, kind), model, workdir,
                                                   f"{clip['name']}_{kind}", args.tries, interval_s)
                frame_log.extra["detector_ms_per_frame"] = detector_alone_ms(videos[clip["name"]].path,
                                                                             detector_config(config, kind))
                passes.setdefault((kind, clip["name"]), []).append((frame_log, resources))
    results: dict[str, Any] = {"meta": meta(argv), "stress": {"folder": str(args.stress), "clips": [c for c, _ in clips],
                                                              "repeats": args.repeats, "warmup_frames": warmup},
                               "detectors": {}, "disagreements": {}}
    chosen: dict[str, dict[str, list[np.ndarray]]] = {}
    for kind in kinds:
        reports = {}
        for clip, _ in clips:
            name = clip["name"]
            runs = [clip_report(log, res, measures[name], warmup) for log, res in passes[(kind, name)]]
            pick = median_index([r["cpu_ms_per_frame"] for r in runs])
            alone = [r["detector_ms_per_frame"] for r in runs]
            reports[name] = {**runs[pick], "runs_cpu_ms_per_frame": [r["cpu_ms_per_frame"] for r in runs],
                             "runs_fps": [r["fps"] for r in runs], "runs_detector_ms_per_frame": alone,
                             "detector_ms_per_frame": statistics.median(alone)}
            chosen.setdefault(name, {})[kind] = passes[(kind, name)][pick][0].boxes
        progress(f"{kind}: false boxes on {NO_FACE_CLIP.name}")
        results["detectors"][kind] = {"clips": reports, "summary": summary(reports),
                                      "no_face": no_face_report(config, model, workdir, kind, args.tries, interval_s)}
    if args.crops:
        args.crops.mkdir(parents=True, exist_ok=True)
    for clip, path in clips:
        boxes = {**chosen[clip["name"]], "reference": measures[clip["name"]].reference}
        results["disagreements"][clip["name"]] = disagreements(boxes, clip["name"], path, args.crops)
    return results


# --- report ---------------------------------------------------------------------------------------------------


def detector_table(result: dict[str, Any], clips: list[dict[str, Any]], markdown: bool) -> str:
    rows = []
    for clip in clips:
        r = result["clips"][clip["name"]]
        rows.append([clip["name"], f"{clip['width']}x{clip['height']}", r["frames"], r["recall"]["reference_frames"],
                     fmt(r["recall"]["recall"], 3), r["face_recall"]["reference_faces"],
                     fmt(r["face_recall"]["recall"], 3), r["reference_false_boxes"], r["face_recall"]["extra"],
                     fmt(r["truth_recall"]["recall"], 3), r["fps"], fmt(r["cpu_ms_per_frame"], 2),
                     fmt(r["detector_ms_per_frame"], 2), r["other_cpu_pct"]])
    s = result["summary"]
    total, mean, worst = s["total"], s["mean"], s["worst"]
    rows.append(["all clips (pooled)", "", total["frames"], "", fmt(total["frame_recall"], 3), "",
                 fmt(total["face_recall"], 3), "", "", fmt(total["truth_recall"], 3), total["fps"],
                 fmt(total["cpu_ms_per_frame"], 2), fmt(total["detector_ms_per_frame"], 2), ""])
    rows.append(["mean of clips", "", "", "", fmt(mean["frame_recall"], 3), "", fmt(mean["face_recall"], 3), "", "",
                 fmt(mean["truth_recall"], 3), mean["fps"], fmt(mean["cpu_ms_per_frame"], 2),
                 fmt(mean["detector_ms_per_frame"], 2), ""])
    rows.append(["WORST CLIP", "", "", "", f"{fmt(worst['frame_recall']['value'], 3)} ({worst['frame_recall']['clip']})",
                 "", f"{fmt(worst['face_recall']['value'], 3)} ({worst['face_recall']['clip']})", "", "",
                 f"{fmt(worst['truth_recall']['value'], 3)} ({worst['truth_recall']['clip']})",
                 f"{fmt(worst['fps']['value'])} ({worst['fps']['clip']})",
                 f"{fmt(worst['cpu_ms_per_frame']['value'], 2)} ({worst['cpu_ms_per_frame']['clip']})",
                 f"{fmt(worst['detector_ms_per_frame']['value'], 2)} ({worst['detector_ms_per_frame']['clip']})", ""])
    return table(["clip", "size", "frames", "ref frames", "frame recall", "ref faces", "face recall",
                  "ref false boxes", "boxes not in ref", "truth face recall", "frames/s", "CPU ms/frame",
                  "detector alone ms/frame", "others' CPU %"], rows, markdown)


def side_by_side_table(results: dict[str, Any], clips: list[dict[str, Any]], markdown: bool) -> str:
    kinds = list(results["detectors"])
    headers = ["clip"]
    for figure in ("frame recall", "face recall", "truth face recall", "CPU ms/frame", "detector alone ms/frame"):
        headers += [f"{kind} {figure}" for kind in kinds]
    pairs = [f"{a}_not_{b}" for a, b in permutations(kinds, 2)]
    headers += [p.replace("_not_", " not ") for p in pairs]
    rows = []
    for clip in clips:
        name = clip["name"]
        per = [results["detectors"][k]["clips"][name] for k in kinds]
        rows.append([name, *(fmt(r["recall"]["recall"], 3) for r in per),
                     *(fmt(r["face_recall"]["recall"], 3) for r in per),
                     *(fmt(r["truth_recall"]["recall"], 3) for r in per), *(fmt(r["cpu_ms_per_frame"], 2) for r in per),
                     *(fmt(r["detector_ms_per_frame"], 2) for r in per),
                     *(results["disagreements"][name][p] for p in pairs)])
    sums = [results["detectors"][k]["summary"] for k in kinds]
    rows.append(["all clips (pooled)", *(fmt(s["total"]["frame_recall"], 3) for s in sums),
                 *(fmt(s["total"]["face_recall"], 3) for s in sums), *(fmt(s["total"]["truth_recall"], 3) for s in sums),
                 *(fmt(s["total"]["cpu_ms_per_frame"], 2) for s in sums),
                 *(fmt(s["total"]["detector_ms_per_frame"], 2) for s in sums),
                 *(sum(results["disagreements"][c["name"]][p] for c in clips) for p in pairs)])
    rows.append(["WORST CLIP", *(fmt(s["worst"]["frame_recall"]["value"], 3) for s in sums),
                 *(fmt(s["worst"]["face_recall"]["value"], 3) for s in sums),
                 *(fmt(s["worst"]["truth_recall"]["value"], 3) for s in sums),
                 *(fmt(s["worst"]["cpu_ms_per_frame"]["value"], 2) for s in sums),
                 *(fmt(s["worst"]["detector_ms_per_frame"]["value"], 2) for s in sums), *([""] * len(pairs))])
    return table(headers, rows, markdown)


def stress_text(results: dict[str, Any], markdown: bool = False) -> str:
    stress, m = results["stress"], results["meta"]
    clips = stress["clips"]
    lines = [f"{m['date']}  {m['cpu_model']}  ({m['cores']} cores, load {fmt(m.get('load_1m_at_start'), 2)} at start)  "
             f"commit {m['commit']}",
             f"stress set {stress['folder']}: {len(clips)} clips; the pass with the median CPU ms/frame of "
             f"{stress['repeats']} is shown; frames/s and CPU after {stress['warmup_frames']} warm-up frames"]
    parts = ["  \n".join(lines) if markdown else "\n".join(lines)]
    for kind, result in results["detectors"].items():
        nf = result["no_face"]
        parts += ["", f"### detector.kind = {kind}\n" if markdown else f"detector.kind = {kind}",
                  detector_table(result, clips, markdown), "",
                  f"{nf['clip']}: {nf['false_boxes']} false boxes in {nf['frames_with_boxes']} of {nf['frames']} frames"]
    if len(results["detectors"]) > 1:
        parts += ["", "### Side by side\n" if markdown else "side by side",
                  side_by_side_table(results, clips, markdown)]
    return "\n".join(parts)


def replace_section(old: str, new_section: str) -> str:
    """``old`` with its SECTION replaced by ``new_section`` (or it appended), every other section kept in place."""
    lines = old.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == SECTION), None)
    if start is None:
        return old.rstrip("\n") + "\n\n" + new_section.strip("\n") + "\n"
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return "\n".join(lines[:start] + new_section.strip("\n").splitlines() + [""] + lines[end:]).rstrip("\n") + "\n"


def stress_markdown(results: dict[str, Any]) -> str:
    m = results["meta"]
    return "\n".join([SECTION, "", f"`{m['command']}`", "",
                      f"Machine: {m['cpu_model']}, {m['cores']} cores; software: "
                      + ", ".join(f"{k} {v}" for k, v in m["versions"].items()), "",
                      stress_text(results, markdown=True)])
