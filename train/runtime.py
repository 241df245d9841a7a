"""Accuracy through the device's own path: the trained model converted to int8 by convert/, then labelled images
through edge.evaluate (the runtime's detector, crop and classifier), so the figure is the one a user sees."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from convert.build import Request, build
from edge.config import DetectorConfig
from edge.datasets import DatasetError, read_labelled
from edge.evaluate import evaluate, model_report, model_runs, write_outputs
from train import TrainError

log = logging.getLogger(__name__)

RUNTIME_FOLDER = "runtime"  # inside the run folder: the int8 model, its reports, edge.evaluate's outputs
INT8_FILE = "model_int8.tflite"
LATENCY_RUNS = 50  # per-face timings in convert's report; accuracy is the point here
THREADS = 1  # the classifier's threads, as on a Raspberry Pi by default


@dataclass(frozen=True)
class RuntimeEval:
    """What to score through the runtime: labelled images and the faces that calibrate the int8 model."""

    images: Path  # edge.evaluate's formats: ROOT/<label>/ folders, a path,label[,box] CSV, a FER2013 CSV
    calib: tuple[Path, ...]  # convert --calib sources (a FER2013 CSV, folders of photos, videos)
    calib_crops: bool = False  # the calibration images are face crops already
    detector: DetectorConfig | None = None
    usage: str | None = None  # FER2013 images: only the rows of this split

    def check(self) -> None:
        """Before TensorFlow loads: the paths exist."""
        for path in (self.images, *self.calib):
            if not path.exists():
                raise TrainError(f"runtime evaluation: not found: {path}")


def runtime_report(keras_path: Path, request: RuntimeEval, out: Path) -> dict[str, Any]:
    """Convert ``keras_path`` to int8 in ``out/runtime/`` and score ``request.images`` as edge.evaluate does."""
    folder = out / RUNTIME_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    tflite = folder / INT8_FILE
    conversion = build(Request(keras=keras_path, out=tflite, quant="int8", calib=request.calib,
                               crops=request.calib_crops, latency_runs=LATENCY_RUNS,
                               source_name=keras_path.name)).report
    try:
        faces = read_labelled(request.images, request.usage)
    except DatasetError as exc:
        raise TrainError(f"runtime evaluation: {exc}") from None
    runs = model_runs([str(tflite)], THREADS, flip=False)
    items = evaluate(faces, runs, request.detector or DetectorConfig(), jobs=1)
    report = model_report(runs[0], faces, items)
    write_outputs(folder, request.images, [report], runs, faces, items)
    agreement = conversion["validation"]["converted"]["top1_agreement"]
    log.info("runtime path (%s, int8): accuracy %s on %d of %d images (%d without a face found)", request.images,
             "-" if report["accuracy"] is None else f"{report['accuracy']:.4f}", report["scored"], report["images"],
             report["no_face"])
    return {"images": str(request.images), "model": str(tflite), "images_total": report["images"],
            "scored": report["scored"], "no_face": report["no_face"], "unreadable": report["unreadable"],
            "accuracy": report["accuracy"], "accuracy_no_face_wrong": report["accuracy_no_face_wrong"],
            "macro_f1": report["macro_f1"], "int8_agreement_with_float": agreement,
            "report": str(folder / "report.json")}


def runtime_line(runtime: dict[str, Any]) -> str:
    """One line for the printed summary."""
    accuracy = "-" if runtime["accuracy"] is None else f"{runtime['accuracy']:.4f}"
    missed = "-" if runtime["accuracy_no_face_wrong"] is None else f"{runtime['accuracy_no_face_wrong']:.4f}"
    return (f"runtime path (detector, crop, int8 model) on {runtime['images']}: accuracy {accuracy} on "
            f"{runtime['scored']} of {runtime['images_total']} images, {missed} counting the "
            f"{runtime['no_face']} without a face found as wrong")
