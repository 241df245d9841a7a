"""Command line: `python -m edge.evaluate DATA --model M ...`: accuracy on labelled faces through the runtime's own stages.

Each image goes through what `edge.run` does to a photo: the configured detector (a complete
still-image scan; the largest face is scored, or the face box the list gives), the model's crop
(size, colour, margin from its sidecar) and the classifier. FER2013 rows are faces already: no
detection. Several models are scored on the same faces, side by side.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.classify import Classifier
from edge.config import Config, ConfigError, DetectorConfig, load_config
from edge.crop import face_image, model_crops
from edge.datasets import SPLITS, DatasetError, LabelledFace, canonical_label, read_labelled
from edge.detect import DetectorError, make_detector
from edge.metrics import classification_metrics, confusion_matrix, plot_confusion_matrix
from edge.model import ModelError, ModelInfo
from edge.models import model_name, resolve_model
from edge.signals import StopReason
from edge.summary import PLOT_HINT

log = logging.getLogger("edge.evaluate")

EXIT_OK = 0
EXIT_BELOW_ACCURACY = 1
EXIT_BAD_INPUT = 2  # Ctrl-C exits with StopReason.INTERRUPT.exit_code (130), as every fer-edge command does
CHUNK = 64  # images prepared per task, and crops classified per call
WARN_EACH = 5  # unreadable images named one by one; the rest are counted
OK, NO_FACE, UNREADABLE, BAD_BOX = "ok", "no face", "unreadable", "box outside image"


@dataclass
class Prepared:
    """One labelled image after detection and cropping: its status, the face box and one crop per model."""

    status: str
    box: tuple[int, int, int, int] | None = None
    crops: list[np.ndarray] = field(default_factory=list)  # per model, (*crop_shape) uint8


def largest(boxes: np.ndarray) -> np.ndarray:
    """The face with the largest box (a labelled photo shows one person; others are in the background)."""
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return boxes[int(np.argmax(areas))]


class Preparer:
    """Finds and crops the labelled face of each image for every model (runs in worker processes with --jobs)."""

    def __init__(self, detector: DetectorConfig, infos: list[ModelInfo]) -> None:
        self.detector_config = detector
        self.detector = None  # built on first use: a FER2013 CSV never needs one
        self.infos = infos

    def __call__(self, face: LabelledFace) -> Prepared:
        if face.pixels is not None:
            return Prepared(OK, None, [face_image(face.pixels, info) for info in self.infos])
        frame = cv2.imread(str(face.path), cv2.IMREAD_COLOR) if face.path.is_file() else None
        if frame is None:
            return Prepared(UNREADABLE)
        if face.box is not None:
            box = np.array(face.box)
            if box[0] >= frame.shape[1] or box[1] >= frame.shape[0]:
                return Prepared(BAD_BOX, face.box)
        else:
            if self.detector is None:
                self.detector = make_detector(self.detector_config)
            boxes = self.detector.detect(frame, still=True).xyxy
            if not len(boxes):
                return Prepared(NO_FACE)
            box = largest(boxes)
        crops = [model_crops(frame, box[np.newaxis], info)[0] for info in self.infos]
        return Prepared(OK, tuple(int(v) for v in box), crops)

    def chunk(self, faces: list[LabelledFace]) -> list[Prepared]:
        return [self(face) for face in faces]


_worker: Preparer | None = None


def start_worker(detector: DetectorConfig, infos: list[ModelInfo]) -> None:
    global _worker
    cv2.setNumThreads(1)  # the processes share the cores
    _worker = Preparer(detector, infos)


def prepare_chunk(faces: list[LabelledFace]) -> list[Prepared]:
    return _worker.chunk(faces)


def prepared(faces: list[LabelledFace], detector: DetectorConfig, infos: list[ModelInfo],
             jobs: int) -> Iterator[list[Prepared]]:
    """The faces prepared in chunks of CHUNK, in order; by ``jobs`` worker processes when there is detecting to do."""
    chunks = [faces[i:i + CHUNK] for i in range(0, len(faces), CHUNK)]
    if jobs <= 1 or len(chunks) <= 1 or all(face.pixels is not None for face in faces):
        preparer = Preparer(detector, infos)
        for chunk in chunks:
            yield preparer.chunk(chunk)
        return
    with ProcessPoolExecutor(jobs, initializer=start_worker, initargs=(detector, infos)) as pool:
        yield from pool.map(prepare_chunk, chunks)


@dataclass
class ModelRun:
    """One model's answers on the dataset, image by image."""

    name: str
    path: Path
    classifier: Classifier
    labels: tuple[str, ...]  # the model's classes as runtime class names
    probs: list[np.ndarray] = field(default_factory=list)  # (classes,) per image; empty where not scored
    classify_s: float = 0.0
    faces: int = 0

    def classify(self, crops: list[np.ndarray]) -> np.ndarray:
        start = time.perf_counter()
        probs = self.classifier.classify(np.stack(crops)) if crops else np.zeros((0, len(self.labels)), np.float32)
        self.classify_s += time.perf_counter() - start
        self.faces += len(crops)
        return probs


def model_runs(specs: list[str], threads: int, flip: bool) -> list[ModelRun]:
    """Every --model loaded, named by its shipped name or file stem (made unique)."""
    runs: list[ModelRun] = []
    for spec in specs:
        path = resolve_model(spec)
        classifier = Classifier(path, num_threads=threads, flip=flip, batch=True)  # ~10% less CPU a face (BENCHMARKS.md)
        name = model_name(path)
        taken = {run.name for run in runs}
        unique = name if name not in taken else next(f"{name}-{i}" for i in range(2, 99) if f"{name}-{i}" not in taken)
        labels = tuple(canonical_label(label) or label for label in classifier.labels)
        runs.append(ModelRun(unique, path, classifier, labels))
    return runs


def why_skipped(face: LabelledFace, item: Prepared) -> str:
    """Why an image gave no face to score: a box outside it, a missing file, or pixels OpenCV cannot decode."""
    if item.status == BAD_BOX:
        return f"box {item.box} lies outside the image"
    if not face.path.exists():
        return "no such file"
    return "not a readable image" if face.path.is_file() else "not a file"


def evaluate(faces: list[LabelledFace], runs: list[ModelRun], detector: DetectorConfig, jobs: int) -> list[Prepared]:
    """Prepare every image once, classify each face with every model; returns the per-image preparation."""
    infos = [run.classifier.info for run in runs]
    results: list[Prepared] = []
    unreadable = 0
    for chunk, batch in zip(prepared(faces, detector, infos, jobs), (faces[i:i + CHUNK] for i in range(0, len(faces), CHUNK))):
        for item, face in zip(chunk, batch):
            if item.status in (UNREADABLE, BAD_BOX):
                unreadable += 1
                if unreadable <= WARN_EACH:
                    log.warning("skipped %s: %s", face.name, why_skipped(face, item))
        ok = [i for i, item in enumerate(chunk) if item.status == OK]
        for m, run in enumerate(runs):
            probs = iter(run.classify([chunk[i].crops[m] for i in ok]))
            run.probs += [next(probs) if item.status == OK else np.zeros(0, np.float32) for item in chunk]
        for item in chunk:
            item.crops = []  # scored: the pixels are no longer needed
        results += chunk
        log.info("%d of %d images done", len(results), len(faces))
    if unreadable > WARN_EACH:
        log.warning("skipped %d unreadable images in all (the first %d named above)", unreadable, WARN_EACH)
    return results


def model_report(run: ModelRun, faces: list[LabelledFace], items: list[Prepared]) -> dict[str, Any]:
    """Accuracy, macro F1, per-class figures and the confusion matrix of one model; faces without an answer counted apart."""
    statuses = Counter(item.status for item in items)
    missing = Counter(face.label for face in faces if face.label not in run.labels)
    for label, count in sorted(missing.items()):
        log.warning("model %s has no class %r: %d images labelled so are not scored", run.name, label, count)
    scored = [i for i, (face, item) in enumerate(zip(faces, items)) if item.status == OK and face.label in run.labels]
    truth = np.array([run.labels.index(faces[i].label) for i in scored], np.int64)
    probs = np.array([run.probs[i] for i in scored], np.float32).reshape(len(scored), len(run.labels))
    metrics = classification_metrics(confusion_matrix(truth, probs.argmax(axis=1), len(run.labels)), run.labels)
    no_face = Counter(face.label for face, item in zip(faces, items) if item.status == NO_FACE)
    with_labels = [face for face, item in zip(faces, items) if item.status in (OK, NO_FACE) and face.label in run.labels]
    correct = int(np.trace(np.array(metrics["confusion_matrix"])))
    return {
        "model": run.name, "path": str(run.path), "flip": run.classifier.flip,
        "images": len(items), "scored": len(scored), "no_face": statuses[NO_FACE],
        "unreadable": statuses[UNREADABLE] + statuses[BAD_BOX], "not_a_model_class": sum(missing.values()),
        "accuracy": metrics["accuracy"] if scored else None,
        "accuracy_no_face_wrong": correct / len(with_labels) if with_labels else None,
        "macro_f1": metrics["macro_f1"] if scored else None,
        "weighted_f1": metrics["weighted_f1"] if scored else None,
        "per_class": {label: {**row, "no_face": no_face[label]} for label, row in metrics["per_class"].items()},
        "labels": list(run.labels), "confusion_matrix": metrics["confusion_matrix"],
        "classify_ms_per_face": round(1000 * run.classify_s / run.faces, 4) if run.faces else None,
    }


def write_predictions(path: Path, run: ModelRun, faces: list[LabelledFace], items: list[Prepared]) -> None:
    """One row per image: the label, what the model said (or why it said nothing), the face box, every probability."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "label", "status", "prediction", "probability", "correct", "x1", "y1", "x2", "y2",
                         *(f"p_{label}" for label in run.labels)])
        for face, item, probs in zip(faces, items, run.probs):
            box = list(item.box) if item.box else ["", "", "", ""]
            if len(probs):
                top = int(np.argmax(probs))
                answer = [run.labels[top], f"{probs[top]:.4f}", int(run.labels[top] == face.label)]
            else:
                answer = [item.status, "", ""]
            scores = [f"{p:.4f}" for p in probs] if len(probs) else [""] * len(run.labels)  # every row as wide
            writer.writerow([face.name, face.label, item.status, *answer, *box, *scores])


def write_outputs(out: Path, data: Path, reports: list[dict[str, Any]], runs: list[ModelRun],
                  faces: list[LabelledFace], items: list[Prepared]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "report.json"]
    written[0].write_text(json.dumps({"dataset": str(data), "models": reports}, indent=2) + "\n")
    for report, run in zip(reports, runs):
        predictions = out / f"{run.name}.predictions.csv"
        write_predictions(predictions, run, faces, items)
        matrix = out / f"{run.name}.confusion.json"
        matrix.write_text(json.dumps({"rows": "true class", "columns": "predicted class", "labels": report["labels"],
                                      "confusion_matrix": report["confusion_matrix"],
                                      "no_face": {k: v["no_face"] for k, v in report["per_class"].items()}},
                                     indent=2) + "\n")
        written += [predictions, matrix]
        written += confusion_png(out / f"{run.name}.confusion.png", report)
    return written


def confusion_png(path: Path, report: dict[str, Any]) -> list[Path]:
    """The confusion matrix drawn, where matplotlib is installed (the device install leaves it out)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        log.warning("matplotlib is not installed: no %s (%s)", path.name, PLOT_HINT)
        return []
    accuracy = report["accuracy"]
    title = f"{report['model']}: accuracy {accuracy:.3f}, {report['scored']} faces" if accuracy is not None else report["model"]
    return [plot_confusion_matrix(np.array(report["confusion_matrix"]), report["labels"], path, title)]


def percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def table(data: Path, faces: list[LabelledFace], reports: list[dict[str, Any]]) -> str:
    """The side-by-side table, then each model's per-class precision / recall / F1."""
    counts = Counter(face.label for face in faces)
    classes = [label for label in dict.fromkeys(label for r in reports for label in r["labels"]) if counts[label]]
    lines = [f"{data}: {len(faces)} images ({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))})",
             "accuracy and recall in %, on the faces scored; 'all': a missed face counts as wrong", "",
             f"{'model':<24} {'scored':>6} {'no face':>7} {'unread':>6} {'accuracy':>8} {'all':>5} {'macro F1':>8}  "
             + " ".join(f"{label[:8]:>8}" for label in classes)]
    for r in reports:
        recall = [percent(r["per_class"][c]["recall"]) if c in r["per_class"] and r["per_class"][c]["support"]
                  else "-" for c in classes]  # '-': none of that class scored (unreadable, or not a model class)
        lines.append(f"{r['model'][:24]:<24} {r['scored']:>6} {r['no_face']:>7} {r['unreadable']:>6} "
                     f"{percent(r['accuracy']):>8} {percent(r['accuracy_no_face_wrong']):>5} "
                     f"{percent(r['macro_f1']):>8}  " + " ".join(f"{v:>8}" for v in recall))
    for r in reports:
        lines += ["", f"{r['model']}: {'class':<10} {'precision':>9} {'recall':>7} {'f1':>6} {'support':>8} {'no face':>8}"]
        for label, row in r["per_class"].items():
            if row["support"] or row["no_face"] or np.array(r["confusion_matrix"])[:, r["labels"].index(label)].sum():
                lines.append(f"{'':{len(r['model']) + 2}}{label:<10} {row['precision']:>9.3f} {row['recall']:>7.3f} "
                             f"{row['f1']:>6.3f} {row['support']:>8d} {row['no_face']:>8d}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m edge.evaluate",
        description="Accuracy of expression models on labelled faces, through the runtime's own detector, crop and "
                    "classifier: class folders ROOT/<label>/*.jpg, a CSV of path,label[,box], or a FER2013 CSV.")
    p.add_argument("data", type=Path, help="ROOT/<label>/ folders, a path,label CSV, or fer2013.csv")
    p.add_argument("--model", action="append", default=None,
                   help="a shipped model's name or a .tflite path; repeat to compare (default: the shipped default)")
    p.add_argument("--out", type=Path, default=Path("evaluation"),
                   help="folder for report.json and per model <name>.predictions.csv, .confusion.json/.png "
                        "(default ./evaluation)")
    p.add_argument("--min-accuracy", type=float, default=None,
                   help="exit 1 when a model's accuracy (on the faces scored) is below this, e.g. 0.6")
    p.add_argument("--flip", action="store_true", help="average each face with its mirror image (classifier.flip)")
    p.add_argument("--usage", choices=SPLITS, help="FER2013: only the rows of this split (e.g. PrivateTest)")
    p.add_argument("--ferplus", type=Path, help="FER2013: relabel by the FER+ majority vote (fer2013new.csv)")
    p.add_argument("--config", type=Path, help="TOML config: its [detector] and [classifier] threads")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                   help="processes finding faces in images (default: one per core)")
    p.add_argument("--limit", type=int, default=None, help="only the first N images (a quick look)")
    p.add_argument("--log-level", default="WARNING", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    args = p.parse_args(argv)
    if args.min_accuracy is not None and not 0.0 <= args.min_accuracy <= 1.0:
        p.error(f"--min-accuracy must be in [0, 1], got {args.min_accuracy}")
    if args.jobs < 1 or (args.limit is not None and args.limit < 1):
        p.error("--jobs and --limit must be >= 1")
    return args


def below_minimum(reports: list[dict[str, Any]], minimum: float | None) -> list[str]:
    """One line per model under --min-accuracy (a model that scored no face is under it)."""
    if minimum is None:
        return []
    bar = f"--min-accuracy {100 * minimum:.1f}%"
    return [f"{r['model']}: no face was scored, so it cannot reach {bar}" if r["accuracy"] is None
            else f"{r['model']}: accuracy {percent(r['accuracy'])}% is below {bar}"
            for r in reports if r["accuracy"] is None or r["accuracy"] < minimum]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")
    if args.out.exists() and not args.out.is_dir():
        print(f"error: --out {args.out} exists and is not a folder", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        config: Config = load_config(args.config)
        runs = model_runs(args.model or [""], config.classifier.threads, args.flip or config.classifier.flip)
        faces = read_labelled(args.data, args.usage, args.ferplus)[:args.limit]
        items = evaluate(faces, runs, config.detector, args.jobs)
    except (DatasetError, ModelError, ConfigError, DetectorError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return StopReason.INTERRUPT.exit_code
    reports = [model_report(run, faces, items) for run in runs]
    print(table(args.data, faces, reports))
    try:
        written = write_outputs(args.out, args.data, reports, runs, faces, items)
    except OSError as exc:
        print(f"error: cannot write to {args.out}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"\nwrote {', '.join(str(p) for p in written)}")
    failures = below_minimum(reports, args.min_accuracy)
    for line in failures:
        print(f"error: {line}", file=sys.stderr)
    return EXIT_BELOW_ACCURACY if failures else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
