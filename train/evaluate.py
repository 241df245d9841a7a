"""Evaluation of a trained model on an official test split, single-crop and with test-time augmentation:
`python -m train.evaluate --model DIR/model.keras --data fer2013.csv`."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edge.model import ModelInfo, load_model_info
from train import TrainError
from train.data import FERPLUS_VOTES, SPLITS, Dataset, class_set_for_labels, load_dataset
from train.metrics import evaluate_predictions
from train.report import plot_confusion_matrix, write_json
from train.tta import DEFAULT_CROP_FRACTION, TTA_MODES, averaged_probabilities

log = logging.getLogger("train.evaluate")  # also when run as __main__

METRICS_FILE = "metrics.json"
CONFUSION_FILE = "confusion_matrix.png"
BATCH = 256  # images per inference batch


def predict(model: Any, images: np.ndarray, info: ModelInfo) -> np.ndarray:
    """Softmax outputs (n, classes) for uint8 faces (n, side, side), normalised as ``info`` says."""
    batches = [model.predict_on_batch(info.normalize(images[i:i + BATCH])[..., None])
               for i in range(0, len(images), BATCH)]
    return np.concatenate([np.asarray(b) for b in batches]) if batches else np.zeros((0, len(info.labels)))


def evaluate_split(model: Any, split: Dataset, info: ModelInfo, split_name: str, out: Path,
                   tta_crop: float = DEFAULT_CROP_FRACTION, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Metrics of ``model`` on one split, written to out/metrics.json and out/confusion_matrix.png.

    The main figures are single-crop (what the device does: one whole face per prediction); ``tta``
    holds accuracy and macro F1 with flip and ten-crop averaging beside them. ``extra`` (e.g. the
    teacher's figures of a distilled student) is stored as given.
    """
    probabilities = {mode: averaged_probabilities(lambda faces: predict(model, faces, info), split.images, mode,
                                                  tta_crop) for mode in TTA_MODES}
    metrics = {"split": split_name, "dataset": split.source,
               **evaluate_predictions(split.labels, probabilities["single"], split.classes)}
    metrics["tta"] = {"crop_fraction": tta_crop}
    for mode, probs in probabilities.items():
        scored = evaluate_predictions(split.labels, probs, split.classes)
        metrics["tta"][mode] = {"accuracy": scored["accuracy"], "macro_f1": scored["macro_f1"]}
    metrics.update(extra or {})
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / METRICS_FILE, metrics)
    title = f"{split_name}: accuracy {metrics['accuracy']:.3f}, macro F1 {metrics['macro_f1']:.3f}"
    plot_confusion_matrix(np.array(metrics["confusion_matrix"]), split.classes, out / CONFUSION_FILE, title)
    log.info("%s: accuracy %.4f (flip %.4f, ten-crop %.4f), macro F1 %.4f, weighted F1 %.4f on %d images",
             split_name, metrics["accuracy"], metrics["tta"]["flip"]["accuracy"],
             metrics["tta"]["ten_crop"]["accuracy"], metrics["macro_f1"], metrics["weighted_f1"], metrics["n"])
    return metrics


def summary(metrics: dict[str, Any]) -> str:
    """A short text table: overall figures, test-time augmentation, per-class precision / recall / F1."""
    lines = [f"{metrics['split']}: {metrics['n']} images, accuracy {metrics['accuracy']:.4f}, "
             f"macro F1 {metrics['macro_f1']:.4f}, weighted F1 {metrics['weighted_f1']:.4f}"]
    if "tta" in metrics:
        tta = metrics["tta"]
        lines.append(f"test-time augmentation: accuracy single {tta['single']['accuracy']:.4f}, "
                     f"flip {tta['flip']['accuracy']:.4f}, ten-crop {tta['ten_crop']['accuracy']:.4f} "
                     f"(crops of {tta['crop_fraction']:.3g} x the face)")
    if "runtime" in metrics:
        from train.runtime import runtime_line

        lines.append(runtime_line(metrics["runtime"]))
    if "teacher_accuracy" in metrics:
        lines.append(f"teacher: accuracy {metrics['teacher_accuracy']:.4f}; the student agrees with it on "
                     f"{metrics['teacher_agreement']:.4f} of the faces")
    lines.append(f"{'class':<10} {'precision':>9} {'recall':>7} {'f1':>6} {'support':>8}")
    for label, row in metrics["per_class"].items():
        lines.append(f"{label:<10} {row['precision']:>9.3f} {row['recall']:>7.3f} {row['f1']:>6.3f} "
                     f"{row['support']:>8d}")
    return "\n".join(lines)


def load_keras_model(path: Path, info: ModelInfo) -> Any:
    """The saved Keras model, checked against its model.json (input size, number of classes)."""
    import keras

    try:
        model = keras.models.load_model(path, compile=False)
    except (OSError, ValueError, TypeError) as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise TrainError(f"{path} is not a loadable Keras model ({first_line})") from None
    expected = (None, info.input_height, info.input_width, 1)
    if tuple(model.input_shape) != expected or model.output_shape[-1] != len(info.labels):
        raise TrainError(f"{path}: input {model.input_shape} / output {model.output_shape} disagree with its "
                         f"metadata ({info.input_height}x{info.input_width}x1 in, {len(info.labels)} classes out)")
    return model


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m train.evaluate",
        description="Evaluate a saved model (model.keras + model.json) on a FER2013 test split.")
    parser.add_argument("--model", type=Path, required=True, help="model.keras with model.json beside it")
    parser.add_argument("--data", type=Path, required=True, help="fer2013.csv or an image-folder root")
    parser.add_argument("--ferplus", type=Path, help="FER+ fer2013new.csv: evaluate against FER+ labels")
    parser.add_argument("--ferplus-vote", choices=FERPLUS_VOTES, default="plurality")
    parser.add_argument("--eval-split", choices=SPLITS[1:], default="PrivateTest")
    parser.add_argument("--tta-crop", type=float, default=DEFAULT_CROP_FRACTION,
                        help=f"ten-crop: crop side as a fraction of the face side (default {DEFAULT_CROP_FRACTION})")
    parser.add_argument("--out", type=Path, help="report folder (default: MODEL_DIR/eval-SPLIT)")
    from train.cli import add_runtime_flags

    add_runtime_flags(parser)
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, Any]:
    if not args.model.is_file():
        raise TrainError(f"model file not found: {args.model}")
    if not 0.5 <= args.tta_crop <= 1.0:
        raise TrainError(f"--tta-crop must be in [0.5, 1], got {args.tta_crop}")
    info = load_model_info(args.model)
    if info.input_height != info.input_width:
        raise TrainError(f"{args.model}: only square inputs are supported, got "
                         f"{info.input_height}x{info.input_width}")
    if args.ferplus is None and "FER+" in str(info.provenance.get("dataset", "")):
        log.warning("%s was trained on FER+ labels; without --ferplus it is scored against FER2013's labels",
                    args.model)
    data = load_dataset(args.data, args.ferplus, class_set_for_labels(info.labels), info.input_height,
                        vote=args.ferplus_vote)
    split = data.split(args.eval_split)
    if len(split) == 0:
        raise TrainError(f"{args.data}: the {args.eval_split} split is empty")
    from train.cli import runtime_request, with_runtime

    runtime = runtime_request(args, args.eval_split)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    model = load_keras_model(args.model, info)
    out = args.out or args.model.parent / f"eval-{args.eval_split}"
    metrics = evaluate_split(model, split, info, args.eval_split, out, args.tta_crop)
    return with_runtime(metrics, runtime, args.model, out)


def main(argv: Sequence[str] | None = None) -> int:
    from train.cli import main_with

    return main_with(run, parse_args(argv), trained=False)


if __name__ == "__main__":
    sys.exit(main())
