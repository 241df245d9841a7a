"""`python -m train.distill --teacher runs/t/model.keras --student mini_xception --data fer2013.csv --out runs/s`:
an edge-sized student trained on a big teacher's softened outputs, optionally on unlabelled faces too."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from convert.faces import FaceCollector
from edge.config import DetectorConfig, load_config
from edge.model import ModelInfo, load_model_info
from train import TrainError
from train.cli import (add_data_flags, add_model_flags, add_run_flags, add_training_flags, load_data, main_with,
                       runtime_request, train_config, with_runtime)
from train.config import MODEL_FILE, DistillConfig, TrainConfig, check_out_folder, network_info

log = logging.getLogger("train.distill")  # also when run as __main__

DEFAULT_STUDENT = "mini_xception"
DEFAULT_MAX_UNLABELLED = 50_000  # faces; a long video yields one per frame, most of them alike


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m train.distill",
        description="Train an edge-sized student (< 1.5M parameters) on a trained teacher's softened outputs "
                    "and the labels, optionally on unlabelled faces the teacher labels softly.")
    add_data_flags(parser)
    distill = parser.add_argument_group("distillation")
    distill.add_argument("--teacher", type=Path, required=True,
                         help="the teacher's model.keras (written by python -m train, model.json beside it)")
    distill.add_argument("--temperature", type=float, default=DistillConfig.temperature,
                         help=f"softens teacher and student outputs (default {DistillConfig.temperature})")
    distill.add_argument("--alpha", type=float, default=DistillConfig.alpha,
                         help="weight of the teacher's soft term; 1 - alpha weighs the labels "
                              f"(default {DistillConfig.alpha})")
    distill.add_argument("--unlabelled", type=Path, nargs="+", default=[], metavar="PATH",
                         help="unlabelled faces: folders of images, photos, videos; faces are found and cropped "
                              "by the runtime's detector, as on the device")
    distill.add_argument("--unlabelled-crops", action="store_true",
                         help="the unlabelled images are face crops already: resize them, detect nothing")
    distill.add_argument("--config", type=Path,
                         help="runtime config.toml whose [detector] finds the unlabelled faces (default: the "
                              "runtime's defaults, detector.kind haar)")
    distill.add_argument("--max-unlabelled", type=int, default=DEFAULT_MAX_UNLABELLED,
                         help=f"most unlabelled faces used, spread evenly (default {DEFAULT_MAX_UNLABELLED})")
    add_model_flags(parser, "--student")
    add_training_flags(parser)
    add_run_flags(parser)
    return parser.parse_args(argv)


def distill_config(args: argparse.Namespace) -> TrainConfig:
    if not args.teacher.is_file():
        raise TrainError(f"teacher model not found: {args.teacher}")
    load_model_info(args.teacher)  # a teacher without its model.json is a one-line error here
    for path in args.unlabelled:
        if not path.exists():
            raise TrainError(f"unlabelled source not found: {path}")
    if args.config is not None and not args.config.is_file():
        raise TrainError(f"config file not found: {args.config}")
    if args.max_unlabelled < 1:
        raise TrainError(f"--max-unlabelled must be >= 1, got {args.max_unlabelled}")
    distill = DistillConfig(args.teacher, args.temperature, args.alpha, tuple(str(p) for p in args.unlabelled))
    return train_config(args, arch=args.arch or DEFAULT_STUDENT, distill=distill)


def unlabelled_faces(paths: list[Path], info: ModelInfo, crops: bool, limit: int,
                     detector: DetectorConfig | None = None) -> np.ndarray:
    """Face crops of the unlabelled sources at the student's input size and margin, cut as the device does
    (convert.faces: the runtime's detector from edge.detect.make_detector and edge.crop.crop_faces;
    still-image scans for photos, frame-after-frame following for videos)."""
    collector = FaceCollector(info, holdout=0.0, crops=crops, detector=detector)
    for path in paths:
        collector.add(path, "calibration")
    faces = collector.result().calibration.subsample(limit)
    if not len(faces):
        raise TrainError(f"no faces found in the unlabelled sources {', '.join(map(str, paths))}"
                         + ("" if crops else " (pass --unlabelled-crops if the images are face crops already)"))
    log.info("%d unlabelled faces from %s", len(faces), ", ".join(map(str, paths)))
    return faces.crops


def run(args: argparse.Namespace) -> dict[str, Any]:
    config = distill_config(args)
    check_out_folder(args.out, args.resume)
    runtime = runtime_request(args, config.eval_split)
    data = load_data(args, config)
    info = network_info(data.classes, data.side, config.face_margin)
    unlabelled = None
    if args.unlabelled:
        detector = load_config(args.config).detector if args.config else None
        unlabelled = unlabelled_faces(args.unlabelled, info, args.unlabelled_crops, args.max_unlabelled, detector)
    from train.fit import train  # TensorFlow loads here, after the input has been checked

    metrics = train(data, config, args.out, resume=args.resume, verbose=2 if args.quiet else "auto",
                    unlabelled=unlabelled)
    return with_runtime(metrics, runtime, args.out / MODEL_FILE, args.out)


def main(argv: Sequence[str] | None = None) -> int:
    return main_with(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
