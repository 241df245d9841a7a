"""Classifier micro-benchmark: per-face latency of float and quantized models at 1, 2, 4 threads on real face crops."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np

from benchmarks.stats import summarize
from edge.classify import Classifier
from edge.config import Config
from edge.crop import detect_and_crop
from edge.detect import make_detector
from edge.model import ModelInfo, load_model_info
from edge.video import read_frames


def face_crops(path: Path, config: Config, info: ModelInfo, limit: int) -> np.ndarray:
    """(n, *crop_shape) face crops cut from a video exactly as the detector process cuts them."""
    detector = make_detector(config.detector)
    crops: list[np.ndarray] = []
    for frame in read_frames(path):
        crops.extend(detect_and_crop(detector, frame, info)[1])
        if len(crops) >= limit:
            break
    return np.stack(crops[:limit]) if crops else np.zeros((0, *info.crop_shape), np.uint8)


def model_kind(classifier: Classifier) -> str:
    """What the interpreter says the model computes in: int8 I/O, or float I/O (float or dynamic-range)."""
    return classifier.input_dtype.name


def time_model(path: Path, threads: int, crops: np.ndarray, warmup: int, repeats: int) -> tuple[dict, np.ndarray]:
    """Per-face latency (ms) of one model at one thread count, one crop per call as the pipeline's faces."""
    classifier = Classifier(path, num_threads=threads)
    for i in range(warmup):
        classifier.classify(crops[i % len(crops)][None])
    times_ms = []
    for _ in range(repeats):
        for crop in crops:
            start = time.perf_counter()
            classifier.classify(crop[None])
            times_ms.append((time.perf_counter() - start) * 1000.0)
    stats = summarize(times_ms)
    row = {"model": path.name, "path": str(path), "input_dtype": model_kind(classifier),
           "size_kb": path.stat().st_size / 1024, "threads": threads,
           "median_ms": stats["p50"], "p99_ms": stats["p99"], "mean_ms": stats["mean"], "n": stats["n"]}
    return row, classifier.classify(crops).argmax(axis=1)


def classifier_bench(models: dict[str, Path], video: Path, config: Config, threads: tuple[int, ...],
                     crops_limit: int, warmup: int, repeats: int) -> dict:
    """Every model at every thread count; top-1 agreement of each model with the first (the reference)."""
    first = next(iter(models.values()))
    crops = face_crops(video, config, load_model_info(first), crops_limit)
    if len(crops) == 0:
        return {"crops": 0, "rows": [], "agreement": {}, "note": "no faces found in the video"}
    rows, top1 = [], {}
    for role, path in models.items():
        for n in threads:
            row, labels = time_model(path, n, crops, warmup, repeats)
            rows.append({"role": role, **row})
            top1[role] = labels
    reference = next(iter(top1))
    agreement = {role: float(np.mean(labels == top1[reference])) for role, labels in top1.items()}
    return {"crops": int(len(crops)), "reference": reference, "rows": rows, "top1_agreement": agreement}
